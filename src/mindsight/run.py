"""A trained run directory as one Python object: its configuration, folds, models, images,
image features and recordings, each read once and kept.

Everything after training (evaluation, reconstruction, every analysis) reads a run the same
way; :class:`Run` is that way, as a diffusers pipeline exposes its components::

    run = Run.open("runs/atm", device="cpu")
    fold = run.folds[0]
    model = run.model(fold)                    # the selected AlignmentModel of the fold
    test = run.recording(fold.test_subject, "test")
    targets = run.image_targets(fold)          # what its test embeddings are ranked against

A run directory holds ``config.yaml``, ``run.json`` and ``folds/<fold>/`` (see
:mod:`mindsight.train.run`). Only the test partition's EEG is read by :meth:`Run.recording`
with ``"test"``: training never calls it.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from mindsight.config import RunConfig
from mindsight.embed.base import resolve_device
from mindsight.embed.features import FeatureTable, level_tables
from mindsight.encoders import ENCODERS
from mindsight.errors import MissingFileError, UnknownNameError
from mindsight.io.datasets import read_images
from mindsight.io.images import ImageSet
from mindsight.recording import Recording
from mindsight.train.checkpoint import load_tensors
from mindsight.train.model import AlignmentModel, ModelSpec
from mindsight.train.run import Fold, check_images, folds, load_partition, load_training, run_levels

__all__ = ["Run", "load_model"]


def load_model(fold_dir: str | Path, device: str = "cpu") -> AlignmentModel:
    """The selected model saved in ``fold_dir/model.safetensors``, rebuilt from its spec."""
    tensors, meta = load_tensors(Path(fold_dir) / "model.safetensors")
    spec = ModelSpec.from_dict(meta["spec"])
    option = ENCODERS.get(spec.encoder).pretrained_option  # its trained weights replace them
    if option is not None and spec.params.get(option) is not None:
        spec.params = {**spec.params, option: None}
    model = AlignmentModel(spec)
    model.load_state_dict(tensors)
    return model.to(device).eval()


class Run:
    """A run directory written by ``mindsight train``; open it with :meth:`Run.open`.

    Images, feature tables and models are read on first use and kept, so the steps of one job
    (several folds, several analyses) share them. Recordings are not kept: they are memory-mapped
    and cheap to reopen, and a picked or cropped copy can be large.
    """

    def __init__(self, path: Path, config: RunConfig, *, device: str = "cpu",
                 cache_dir: Any = None) -> None:
        self.path = path
        self.config = config
        self.device = device
        self.cache_dir = cache_dir
        self._models: dict[tuple[str, str], AlignmentModel] = {}
        self._features: dict[tuple[str, tuple[str, ...]], list[FeatureTable]] = {}

    @classmethod
    def open(cls, path: str | Path, device: str = "auto", cache_dir: Any = None) -> Run:
        """The run in ``path``; ``device`` (``cpu``, ``cuda`` or ``auto``) is where its models and
        features go, ``cache_dir`` where features and converted EEG are cached."""
        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise MissingFileError(f"{path} is not a run directory (no config.yaml); train one first "
                                   "with `mindsight train`")
        return cls(path, RunConfig.load(path / "config.yaml"), device=resolve_device(device),
                   cache_dir=cache_dir)

    def __repr__(self) -> str:
        return f"<Run {self.path} | {self.config.model.encoder}, {len(self.folds)} fold(s), {self.device}>"

    # -- what training wrote ---------------------------------------------------------------------

    @cached_property
    def info(self) -> dict[str, Any]:
        """``run.json``: the protocol, package versions, folds and status of training."""
        path = self.path / "run.json"
        if not path.is_file():
            raise MissingFileError(f"{path} is missing: the run was not written by `mindsight train` "
                                   "or its training never started")
        return json.loads(path.read_text())

    @cached_property
    def folds(self) -> list[Fold]:
        """The folds (test subject × seed) of the configuration, in training order."""
        return folds(self.config)

    def fold(self, name: str | None = None) -> Fold:
        """The fold called ``name`` (e.g. ``sub-01_seed-0``), or the first one."""
        chosen = [f for f in self.folds if name in (None, f.name)]
        if not chosen:
            raise UnknownNameError(f"{self.path}: no fold {name!r}; folds: "
                                   f"{', '.join(f.name for f in self.folds)}")
        return chosen[0]

    def fold_dir(self, fold: Fold) -> Path:
        """The folder of the fold's trained model (shared by all folds of a pooled model)."""
        return self.path / "folds" / fold.model_name

    def trained(self, fold: Fold) -> tuple[Path, dict[str, Any]]:
        """(folder, ``fold.json``) of a fold whose training finished; a clear error otherwise."""
        fold_dir = self.fold_dir(fold)
        info_path = fold_dir / "fold.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if not info.get("complete") or not (fold_dir / "model.safetensors").is_file():
            raise MissingFileError(
                f"{fold_dir}: no trained encoder: fold {fold.model_name} has not finished training; run "
                f"`mindsight train ... --out {self.path} --resume` first"
            )
        return fold_dir, info

    def model(self, fold: Fold, device: str | None = None) -> AlignmentModel:
        """The fold's selected model on ``device`` (default: the run's), loaded once."""
        device = self.device if device is None else resolve_device(device)
        key = (fold.model_name, device)
        if key not in self._models:
            fold_dir, _ = self.trained(fold)
            self._models[key] = load_model(fold_dir, device)
        return self._models[key]

    # -- the data it was trained on --------------------------------------------------------------

    @cached_property
    def images(self) -> ImageSet:
        """Both image partitions, in the recordings' order; training and test concepts are
        checked to be disjoint (zero-shot)."""
        cfg = self.config.data
        images = read_images(cfg.eeg, cfg.images, test_set=cfg.test_set)
        check_images(images)
        return images

    @property
    def levels(self) -> list[str]:
        """The ``model@view`` feature levels of the configuration."""
        return run_levels(self.config)

    def features(self, partition: str, levels: list[str] | None = None) -> list[FeatureTable]:
        """One feature table per level (default: :attr:`levels`) of the ``partition`` images,
        rows in image order; computed or read from the cache once."""
        levels = tuple(self.levels if levels is None else levels)
        key = (partition, levels)
        if key not in self._features:
            self._features[key] = level_tables(self.images[partition], levels, cache_dir=self.cache_dir,
                                               device=self.device)
        return self._features[key]

    def level_tensors(self, partition: str, levels: list[str] | None = None) -> list[torch.Tensor]:
        """:meth:`features` as tensors on the run's device: the input of a model's image side."""
        return [torch.from_numpy(t.features).to(self.device) for t in self.features(partition, levels)]

    def image_targets(self, fold: Fold, partition: str = "test") -> torch.Tensor:
        """The fold's model's image side applied to the ``partition`` images' feature levels:
        what its embeddings are ranked against (the features themselves for a ``fixed`` side).
        The image side sees no labels, so retrieval stays zero-shot."""
        model = self.model(fold)
        return model.image_table(self.level_tensors(partition, model.spec.level_list()))

    def recording(self, subject: int, partition: str) -> Recording:
        """One subject's ``partition`` with the configured channels and time window."""
        return load_partition(self.config, subject, partition, self.images, self.cache_dir)

    def training(self, fold: Fold) -> Recording:
        """The training partition of the fold's training subjects, concatenated."""
        return load_training(self.config, fold, self.images, self.cache_dir)

    @property
    def components(self) -> dict[str, Any]:
        """What the run is made of, by name: ``config``, ``info``, ``folds``, ``images`` and
        ``models`` (every fold's model by folder name; all folds must have finished)."""
        return {"config": self.config, "info": self.info, "folds": self.folds, "images": self.images,
                "models": {f.model_name: self.model(f) for f in self.folds}}
