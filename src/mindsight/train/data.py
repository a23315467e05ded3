"""From a :class:`~mindsight.recording.Recording` to tensors the training loop indexes directly.

The whole set lives in one tensor on the training device; batches are index gathers, with no
per-sample Python loading.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from mindsight.errors import DataFormatError
from mindsight.recording import Recording


@dataclass(frozen=True)
class TrialTensors:
    """Training samples: epochs ``x`` (n, n_chans, n_times) with each sample's image row,
    concept and subject.

    With ``groups`` (samples × repetitions, indices into ``x``; -1 pads) a sample is not one
    row of ``x`` but, each time it is drawn, the average of a random non-empty subset of its
    repetitions (:meth:`inputs`): single trials' variety at the cost of averaged trials.
    """

    x: torch.Tensor
    image: torch.Tensor
    concept: torch.Tensor
    subject: torch.Tensor
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.image)

    def to(self, device: str | torch.device) -> TrialTensors:
        moved = {k: getattr(self, k).to(device) for k in ("x", "image", "concept", "subject")}
        return replace(self, **moved, groups=None if self.groups is None else self.groups.to(device))

    def inputs(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The epochs of samples ``idx``: rows of ``x``, or fresh random repetition averages."""
        if self.groups is None:
            return self.x[idx]
        rows = self.groups[idx]  # (batch, reps)
        valid = rows >= 0
        u = torch.rand(rows.shape, generator=generator).to(rows.device)
        pick = (u < 0.5) & valid
        first = torch.where(valid, u, 2.0).argmin(1)  # a sample with an empty draw keeps one
        pick[torch.arange(len(rows), device=rows.device), first] |= ~pick.any(1)
        w = pick.to(self.x.dtype)
        return torch.einsum("br,brct->bct", w / w.sum(1, keepdim=True), self.x[rows.clamp(min=0)])


def trial_tensors(rec: Recording, n_images: int | None = None) -> TrialTensors:
    """Copy ``rec`` into tensors; ``n_images`` (rows of the image features) is checked."""
    tr = rec.trials
    if n_images is not None and len(tr) and int(tr.image.max()) >= n_images:
        raise DataFormatError(
            f"{rec.description.get('source', 'recording')}: trials refer to image index "
            f"{int(tr.image.max())} but the {rec.partition} image features have only {n_images} "
            "rows; do the EEG and the image set come from the same release?"
        )
    return TrialTensors(
        x=torch.from_numpy(np.array(rec.data, dtype=np.float32)),
        image=torch.from_numpy(tr.image.astype(np.int64)),
        concept=torch.from_numpy(tr.concept.astype(np.int64)),
        subject=torch.from_numpy(tr.subject.astype(np.int64)),
    )


def subset_tensors(rec: Recording, n_images: int | None = None) -> TrialTensors:
    """Single trials of ``rec`` grouped by (subject, image): one sample per group, drawn as a
    random repetition average (see :class:`TrialTensors`)."""
    singles = trial_tensors(rec, n_images)
    tr = rec.trials
    order = np.lexsort((tr.repetition, tr.image, tr.subject))
    keys = np.stack([tr.subject[order], tr.image[order]], axis=1)
    starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
    counts = np.diff(np.r_[starts, len(order)])
    groups = np.full((len(starts), int(counts.max())), -1, dtype=np.int64)
    for j in range(groups.shape[1]):
        has = counts > j
        groups[has, j] = order[starts[has] + j]
    first = torch.from_numpy(order[starts])
    return TrialTensors(x=singles.x, image=singles.image[first], concept=singles.concept[first],
                        subject=singles.subject[first], groups=torch.from_numpy(groups))


def positions(values: torch.Tensor, table: np.ndarray | list[int]) -> torch.Tensor:
    """Index of each of ``values`` in ``table`` (every value must occur there)."""
    table_t = torch.as_tensor(np.asarray(table), dtype=torch.int64)
    order = torch.argsort(table_t)
    pos = torch.searchsorted(table_t[order], values.cpu())
    return order[pos.clamp(max=len(table_t) - 1)].to(values.device)
