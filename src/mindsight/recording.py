"""`Recording`: epoched brain data that carries its own metadata (MNE-like).

A recording is ``data`` of shape (n_trials, n_chans, n_times) in float32 — often a read-only
memmap of the on-disk cache — plus channel names, sampling rate, the time of every sample, and a
trial table saying which image, concept, repetition, session and subject each trial belongs to.

All views (`select`, `pick`, `crop`, `average_repetitions`, `split_validation`) return new
recordings and never modify the data in place; slicing keeps memmaps lazy where it can.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError, LeakageError

PARTITIONS = ("train", "test")


@dataclass(frozen=True)
class Trials:
    """Per-trial metadata, one integer array per column, all of length n_trials.

    ``image`` indexes the images of the recording's partition in the dataset's documented order
    (THINGS-EEG2: image condition i is the i-th image of ``training_images``/``test_images``);
    ``concept`` indexes ``Recording.concept_names``. ``repetition`` and ``session`` are -1 where
    unknown or averaged away; ``n_averaged`` counts the single trials behind each row.
    """

    image: np.ndarray
    concept: np.ndarray
    subject: np.ndarray
    repetition: np.ndarray
    session: np.ndarray
    n_averaged: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.image)
        for f in fields(self):
            col = np.asarray(getattr(self, f.name), dtype=np.int64)
            if col.shape != (n,):
                raise DataFormatError(
                    f"trial column {f.name!r} has shape {col.shape}, expected ({n},)"
                )
            object.__setattr__(self, f.name, col)

    @classmethod
    def build(
        cls,
        image: np.ndarray,
        concept: np.ndarray,
        subject: int | np.ndarray,
        repetition: np.ndarray | None = None,
        session: np.ndarray | None = None,
        n_averaged: np.ndarray | None = None,
    ) -> Trials:
        n = len(image)
        full = lambda v, default: np.full(n, default) if v is None else np.broadcast_to(v, (n,))  # noqa: E731
        return cls(
            image=np.asarray(image),
            concept=np.asarray(concept),
            subject=full(subject, -1),
            repetition=full(repetition, -1),
            session=full(session, -1),
            n_averaged=full(n_averaged, 1),
        )

    def __len__(self) -> int:
        return len(self.image)

    def __getitem__(self, idx: Any) -> Trials:
        return Trials(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def as_dict(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def concatenate(parts: Sequence[Trials]) -> Trials:
        return Trials(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Trials)}
        )


@dataclass(frozen=True, eq=False)
class Recording:
    """Epoched EEG/MEG of one partition (``train`` or ``test``) with its metadata."""

    data: np.ndarray
    ch_names: tuple[str, ...]
    sfreq: float
    times: np.ndarray
    trials: Trials
    partition: str
    concept_names: tuple[str, ...] | None = None
    description: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_names", tuple(self.ch_names))
        object.__setattr__(self, "times", np.asarray(self.times, dtype=np.float64))
        if self.concept_names is not None:
            object.__setattr__(self, "concept_names", tuple(self.concept_names))
        src = self.description.get("source", "recording")
        if self.data.ndim != 3:
            raise DataFormatError(
                f"{src}: data must be (n_trials, n_chans, n_times), got shape {self.data.shape}"
            )
        if self.data.dtype != np.float32:
            raise DataFormatError(f"{src}: data must be float32, got {self.data.dtype}")
        n, c, t = self.data.shape
        if len(self.ch_names) != c:
            raise DataFormatError(f"{src}: {len(self.ch_names)} channel names for {c} channels")
        if len(set(self.ch_names)) != c:
            dup = sorted({x for x in self.ch_names if self.ch_names.count(x) > 1})
            raise DataFormatError(f"{src}: duplicate channel names {dup}")
        if self.times.shape != (t,):
            raise DataFormatError(f"{src}: {self.times.shape[0]} time values for {t} samples")
        if len(self.trials) != n:
            raise DataFormatError(f"{src}: {len(self.trials)} trial rows for {n} trials")
        if self.partition not in PARTITIONS:
            raise DataFormatError(f"partition must be one of {PARTITIONS}, got {self.partition!r}")
        if not self.sfreq > 0:
            raise DataFormatError(f"{src}: sampling rate must be positive, got {self.sfreq}")
        if self.concept_names is not None and n and self.trials.concept.max() >= len(self.concept_names):
            raise DataFormatError(
                f"{src}: concept index {int(self.trials.concept.max())} but only "
                f"{len(self.concept_names)} concept names"
            )

    # -- shape ------------------------------------------------------------------------------
    @property
    def n_trials(self) -> int:
        return self.data.shape[0]

    @property
    def n_chans(self) -> int:
        return self.data.shape[1]

    @property
    def n_times(self) -> int:
        return self.data.shape[2]

    @property
    def tmin(self) -> float:
        return float(self.times[0])

    @property
    def tmax(self) -> float:
        return float(self.times[-1])

    @property
    def n_images(self) -> int:
        return len(np.unique(self.trials.image))

    @property
    def n_concepts(self) -> int:
        return len(np.unique(self.trials.concept))

    @property
    def subjects(self) -> list[int]:
        return sorted(int(s) for s in np.unique(self.trials.subject))

    def __len__(self) -> int:
        return self.n_trials

    def __repr__(self) -> str:
        d = self.description
        name = " ".join(str(x) for x in (d.get("dataset"), d.get("layout")) if x)
        subj = ",".join(f"{s:02d}" for s in self.subjects)
        return (
            f"<Recording | {name} sub-{subj} {self.partition}: {self.n_trials} trials × "
            f"{self.n_chans} ch × {self.n_times} times ({self.tmin:.3f}–{self.tmax:.3f} s, "
            f"{self.sfreq:g} Hz), {self.n_images} images, {self.n_concepts} concepts>"
        )

    def _with(self, **changes: Any) -> Recording:
        return replace(self, **changes)

    # -- views ------------------------------------------------------------------------------
    def select(self, idx: Any) -> Recording:
        """Trials by index, slice or boolean mask (slices keep a memmap lazy)."""
        if isinstance(idx, (int, np.integer)):  # one trial stays a (1, ch, times) recording
            i = int(idx)
            if not -self.n_trials <= i < self.n_trials:
                raise IndexError(f"trial {i} out of range for {self.n_trials} trials")
            i %= self.n_trials
            idx = slice(i, i + 1)
        if isinstance(idx, np.ndarray) and idx.dtype == bool and idx.shape != (self.n_trials,):
            raise DataFormatError(f"boolean mask of shape {idx.shape} for {self.n_trials} trials")
        return self._with(data=self.data[idx], trials=self.trials[idx])

    __getitem__ = select

    def pick(self, ch_names: Sequence[str]) -> Recording:
        """Keep the named channels, in the order given."""
        index = {n: i for i, n in enumerate(self.ch_names)}
        missing = [n for n in ch_names if n not in index]
        if missing:
            raise DataFormatError(
                f"channel(s) {missing} not in this recording; it has {', '.join(self.ch_names)}"
            )
        idx = [index[n] for n in ch_names]
        return self._with(data=self.data[:, idx, :], ch_names=tuple(ch_names))

    def crop(self, tmin: float | None = None, tmax: float | None = None) -> Recording:
        """Keep samples with ``tmin <= t <= tmax`` (seconds, inclusive, as in MNE)."""
        lo = self.tmin if tmin is None else tmin
        hi = self.tmax if tmax is None else tmax
        eps = 1e-3 / self.sfreq  # absorbs float rounding of sample times
        if hi < lo or lo < self.tmin - eps or hi > self.tmax + eps:
            raise DataFormatError(
                f"time window [{lo:.3f}, {hi:.3f}] s is not inside the epoch "
                f"[{self.tmin:.3f}, {self.tmax:.3f}] s"
            )
        keep = np.flatnonzero((self.times >= lo - eps) & (self.times <= hi + eps))
        if keep.size == 0:
            raise DataFormatError(f"time window [{lo:.3f}, {hi:.3f}] s holds no sample")
        sl = slice(int(keep[0]), int(keep[-1]) + 1)
        return self._with(data=self.data[:, :, sl], times=self.times[sl])

    def select_repetitions(self, repetitions: Sequence[int]) -> Recording:
        """Keep single trials whose repetition index is in ``repetitions``."""
        return self.select(np.flatnonzero(np.isin(self.trials.repetition, repetitions)))

    def average_repetitions(self, n: int | None = None, chunk_trials: int = 4096) -> Recording:
        """Average the trials of each (subject, image); with ``n``, only their first ``n``.

        "First" follows the repetition index (the release's order). Works in chunks, so a
        memmapped recording is averaged without loading it whole.
        """
        tr = self.trials
        order = np.lexsort((tr.repetition, tr.image, tr.subject))
        keys = np.stack([tr.subject[order], tr.image[order]], axis=1)
        starts = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)])
        counts = np.diff(np.r_[starts, len(order)])
        if n is not None:
            if n < 1:
                raise DataFormatError(f"number of repetitions to average must be >= 1, got {n}")
            if counts.min() < n:
                raise DataFormatError(
                    f"cannot average {n} repetitions: some images have only {counts.min()}"
                )
            keep = np.concatenate([np.arange(s, s + n) for s in starts])
            order = order[keep]
            starts = np.arange(len(starts)) * n
            counts = np.full(len(starts), n)
        out = np.empty((len(starts), self.n_chans, self.n_times), dtype=np.float32)
        g = 0
        while g < len(starts):
            g_end = g + 1
            while g_end < len(starts) and starts[g_end] + counts[g_end] - starts[g] <= chunk_trials:
                g_end += 1
            rows = order[starts[g] : starts[g_end - 1] + counts[g_end - 1]]
            sorted_rows = np.sort(rows)  # memmaps read fastest in file order
            block = np.asarray(self.data[sorted_rows], dtype=np.float32)
            block = block[np.searchsorted(sorted_rows, rows)]
            sums = np.add.reduceat(block, starts[g:g_end] - starts[g], axis=0)
            out[g:g_end] = sums / counts[g:g_end, None, None]
            g = g_end
        first = order[starts]
        trials = Trials.build(
            image=tr.image[first],
            concept=tr.concept[first],
            subject=tr.subject[first],
            n_averaged=np.add.reduceat(tr.n_averaged[order], starts),
        )
        return self._with(data=out, trials=trials)

    def split_validation(
        self, fraction: float = 0.1, seed: int = 0, n: int | None = None, by: str = "concepts",
    ) -> tuple[Recording, Recording]:
        """Split off a validation set of held-out *training* concepts (``by='concepts'``, the
        default: validation then mimics zero-shot testing) or of random training images
        (``by='images'``, as NICE holds out 740 images); ``n`` of them instead of ``fraction``.

        Returns ``(train, validation)``. Model selection uses the validation part; the test
        partition is never used for it, and splitting it is refused.
        """
        if self.partition != "train":
            raise LeakageError(
                "a validation split must be drawn from the training partition; the test set "
                "never selects models or hyperparameters"
            )
        if by not in ("concepts", "images"):
            raise DataFormatError(f"validation split by must be 'concepts' or 'images', got {by!r}")
        column = self.trials.concept if by == "concepts" else self.trials.image
        units = np.unique(column)
        k = n if n is not None else int(round(fraction * len(units)))
        if not 1 <= k < len(units):
            raise DataFormatError(
                f"validation split needs between 1 and {len(units) - 1} {by}, got {k} "
                f"(fraction={fraction}, {len(units)} training {by})"
            )
        held = np.random.default_rng(seed).choice(units, size=k, replace=False)
        is_val = np.isin(column, held)
        desc = {**self.description, "validation": {"seed": seed, f"n_{by}": int(k)}}
        train = self.select(np.flatnonzero(~is_val))._with(description=desc)
        val = self.select(np.flatnonzero(is_val))._with(description=desc)
        return train, val

    def get_data(self, copy: bool = True) -> np.ndarray:
        """The data as an in-memory float32 array (a copy unless ``copy=False`` and in memory)."""
        return np.array(self.data, dtype=np.float32, copy=copy or isinstance(self.data, np.memmap))

    def to_epochs(self) -> Any:
        """An ``mne.EpochsArray`` of this recording (loads the data), with the trial table as
        metadata. Channel types follow the names (:func:`mindsight.sensors.channel_types`: CTF
        MEG names are 'mag', others 'eeg'); MEG channels get :mod:`mindsight.sensors`' CTF-275
        helmet positions when it knows every name, EEG channels standard 10-05 positions where
        their names have them."""
        import mne
        import pandas as pd

        from mindsight.sensors import channel_types, ctf_base, ctf_layout, make_info

        names = list(self.ch_names)
        types = channel_types(names)
        if all(t == "mag" for t in types) and all(ctf_base(n) in ctf_layout() for n in names):
            info = make_info(names, self.sfreq)
        else:
            info = mne.create_info(names, self.sfreq, types)
            builtin = mne.channels.get_builtin_montages()
            montage = mne.channels.make_standard_montage(  # renamed in MNE 1.13
                "colin27_1005" if "colin27_1005" in builtin else "standard_1005"
            )
            info.set_montage(montage, on_missing="ignore")
        events = np.c_[np.arange(self.n_trials), np.zeros(self.n_trials, int), self.trials.image]
        return mne.EpochsArray(
            self.get_data().astype(np.float64), info, events=events, tmin=self.tmin,
            metadata=pd.DataFrame(self.trials.as_dict()), verbose="error",
        )

    @staticmethod
    def concatenate(recordings: Sequence[Recording]) -> Recording:
        """Stack recordings of one partition (e.g. several subjects) into one, in memory."""
        if not recordings:
            raise DataFormatError("nothing to concatenate")
        first = recordings[0]
        for r in recordings[1:]:
            for attr in ("ch_names", "sfreq", "partition", "concept_names"):
                if getattr(r, attr) != getattr(first, attr):
                    raise DataFormatError(
                        f"cannot concatenate recordings whose {attr} differ: "
                        f"{r.description.get('source')} vs {first.description.get('source')}"
                    )
            if not np.allclose(r.times, first.times):
                raise DataFormatError("cannot concatenate recordings with different time axes")
        return first._with(
            data=np.concatenate([np.asarray(r.data) for r in recordings]),
            trials=Trials.concatenate([r.trials for r in recordings]),
            description={**first.description, "source": [r.description.get("source") for r in recordings]},
        )


def check_same_channels(a: Recording, b: Recording) -> None:
    """Refuse to use two partitions together when their channels differ (name or order)."""
    if a.ch_names != b.ch_names:
        only_a = [c for c in a.ch_names if c not in b.ch_names]
        only_b = [c for c in b.ch_names if c not in a.ch_names]
        detail = (
            f"only in {a.partition}: {only_a}; only in {b.partition}: {only_b}"
            if only_a or only_b
            else "same channels in a different order"
        )
        raise DataFormatError(
            f"channel names differ between {a.description.get('source')} and "
            f"{b.description.get('source')} ({detail})"
        )


def check_disjoint_concepts(train: Recording, test: Recording) -> None:
    """Refuse a train/test pair that shares concepts (zero-shot evaluation needs disjoint ones)."""
    if train.concept_names is None or test.concept_names is None:
        return
    tr = {train.concept_names[i] for i in np.unique(train.trials.concept)}
    te = {test.concept_names[i] for i in np.unique(test.trials.concept)}
    shared = sorted(tr & te)
    if shared:
        raise LeakageError(
            f"{len(shared)} concept(s) appear in both training and test data "
            f"(e.g. {', '.join(shared[:5])}); zero-shot evaluation needs disjoint concepts"
        )
