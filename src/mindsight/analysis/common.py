"""What the temporal and spatial analyses share: the run's first fold, its averaged test data,
and for ``retrain`` the training data and the configuration of the per-window/region models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mindsight.config import RunConfig
from mindsight.errors import DataFormatError
from mindsight.recording import Recording
from mindsight.train.data import TrialTensors, trial_tensors

MODES = ("mask", "retrain")


@dataclass
class AnalysisSetup:
    cfg: RunConfig
    fold: Any  # mindsight.train.run.Fold
    fold_dir: Path
    images: Any  # ImageSet
    feats: torch.Tensor  # the selected model's test image targets, rows = test image index
    test: Recording  # repetition-averaged test partition
    t: TrialTensors  # the same as tensors
    train_rec: Recording | None = None  # retrain only
    train_table: Any = None  # retrain only: training image features
    retrain_cfg: RunConfig | None = None  # retrain only: the run's config with the overrides
    test_levels: list[torch.Tensor] | None = None  # the test images' feature levels (image side input)
    model: Any = None  # the fold's selected model (AlignmentModel)

    def targets(self, model: Any) -> torch.Tensor:
        """The test image targets of ``model`` (a retrained one has its own image side)."""
        return model.image_table(self.test_levels)


def setup(run_dir: Path, analysis: str, mode: str, encoder: str | None, epochs: int | None,
          device: str, cache_dir: Any, progress: bool) -> AnalysisSetup:
    """Read what an analysis of ``run_dir``'s first fold needs (training data only for
    ``retrain``; ``encoder``/``epochs`` override the run's settings for its models)."""
    from mindsight.embed.features import level_tables
    from mindsight.evaluate.run import load_model, load_run_config, trained_fold
    from mindsight.io.datasets import read_images
    from mindsight.train.run import check_images, folds, load_partition, load_training, run_levels

    if mode not in MODES:
        raise DataFormatError(f"unknown {analysis} analysis mode {mode!r}; use 'mask' or 'retrain'")
    cfg = load_run_config(run_dir)
    fold = folds(cfg)[0]
    fold_dir, _ = trained_fold(run_dir, fold)
    images = read_images(cfg.data.eeg, cfg.data.images, test_set=cfg.data.test_set)
    check_images(images)
    model = load_model(fold_dir, device)
    levels = [torch.from_numpy(t.features).to(device) for t in
              level_tables(images["test"], model.spec.level_list(), cache_dir=cache_dir, device=device)]
    feats = model.image_table(levels)
    test = load_partition(cfg, fold.test_subject, "test", images, cache_dir, progress).average_repetitions()
    out = AnalysisSetup(cfg, fold, fold_dir, images, feats, test, trial_tensors(test, len(feats)),
                        test_levels=levels, model=model)
    if mode == "retrain":
        out.train_table = level_tables(images["train"], run_levels(cfg), cache_dir=cache_dir, device=device)
        out.train_rec = load_training(cfg, fold, images, cache_dir, progress)
        out.retrain_cfg = cfg.override([f"model.encoder={encoder}"] if encoder else [])
        if epochs is not None:
            out.retrain_cfg.train.epochs = epochs
    return out


def neutral_input(model: Any, x: torch.Tensor) -> torch.Tensor:
    """(1, n_chans, 1): per channel, the raw value ``model``'s input scaler maps to 0, so that
    masking a sample or a channel with it is masking with 0 in the space the encoder reads."""
    value = torch.as_tensor(model.scaler.neutral(), dtype=x.dtype)
    return value.reshape(1, -1, 1).expand(1, x.shape[1], 1).to(x.device)
