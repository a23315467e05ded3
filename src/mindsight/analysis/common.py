"""What the temporal and spatial analyses share: the run's first fold, its averaged test data,
and for ``retrain`` the training data and the configuration of the per-window/region models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mindsight.config import RunConfig
from mindsight.recording import Recording
from mindsight.run import Run
from mindsight.train.data import TrialTensors, trial_tensors
from mindsight.train.multimodal import spec_modalities


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
    retrain_modalities: Any = None  # retrain only: a multimodal model's modalities (as trained)
    test_levels: list[torch.Tensor] | None = None  # the test images' feature levels (image side input)
    model: Any = None  # the fold's selected model (AlignmentModel)

    def targets(self, model: Any) -> torch.Tensor:
        """The test image targets of ``model`` (a retrained one has its own image side)."""
        return model.image_table(self.test_levels)


def setup(run: Run, mode: str, encoder: str | None, epochs: int | None) -> AnalysisSetup:
    """Read what an analysis of ``run``'s first fold needs (training data only for
    ``retrain``; ``encoder``/``epochs`` override the run's settings for its models)."""
    cfg = run.config
    fold = run.folds[0]
    fold_dir, _ = run.trained(fold)
    model = run.model(fold)
    levels = run.level_tensors("test", model.spec.level_list())
    feats = model.image_table(levels)
    test = run.recording(fold.test_subject, "test").average_repetitions()
    out = AnalysisSetup(cfg, fold, fold_dir, run.images, feats, test, trial_tensors(test, len(feats)),
                        test_levels=levels, model=model)
    if mode == "retrain":
        spec = model.spec  # a multimodal model: the modalities it was trained with (one may be skipped)
        out.train_table = run.features("train", spec.level_list() if spec.modalities else None)
        out.retrain_modalities = spec_modalities(spec)
        out.train_rec = run.training(fold)
        out.retrain_cfg = cfg.override([f"model.encoder={encoder}"] if encoder else [])
        if epochs is not None:
            out.retrain_cfg.train.epochs = epochs
    return out


def neutral_input(model: Any, x: torch.Tensor) -> torch.Tensor:
    """(1, n_chans, 1): per channel, the raw value ``model``'s input scaler maps to 0, so that
    masking a sample or a channel with it is masking with 0 in the space the encoder reads."""
    value = torch.as_tensor(model.scaler.neutral(), dtype=x.dtype)
    return value.reshape(1, -1, 1).expand(1, x.shape[1], 1).to(x.device)
