"""Contrastive training of brain encoders: loss, loop, checkpoints and whole runs."""

from mindsight.train.fit import FitResult, Targets, fit
from mindsight.train.losses import ContrastiveLoss, clip_loss
from mindsight.train.model import AlignmentModel, ModelSpec
from mindsight.train.run import Fold, folds, train_run

__all__ = ["AlignmentModel", "ContrastiveLoss", "FitResult", "Fold", "ModelSpec", "Targets",
           "clip_loss", "fit", "folds", "train_run"]
