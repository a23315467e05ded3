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
    """Epochs ``x`` (n, n_chans, n_times) with each trial's image row, concept and subject."""

    x: torch.Tensor
    image: torch.Tensor
    concept: torch.Tensor
    subject: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device: str | torch.device) -> TrialTensors:
        return replace(self, **{k: getattr(self, k).to(device) for k in ("x", "image", "concept", "subject")})


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


def positions(values: torch.Tensor, table: np.ndarray | list[int]) -> torch.Tensor:
    """Index of each of ``values`` in ``table`` (every value must occur there)."""
    table_t = torch.as_tensor(np.asarray(table), dtype=torch.int64)
    order = torch.argsort(table_t)
    pos = torch.searchsorted(table_t[order], values.cpu())
    return order[pos.clamp(max=len(table_t) - 1)].to(values.device)
