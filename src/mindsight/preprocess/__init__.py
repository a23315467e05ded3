"""Raw THINGS-EEG2 → preprocessed release (MNE), and the MVNN whitening it uses."""

from mindsight.preprocess.mvnn import inverse_sqrt, ledoit_wolf_cov, noise_covariance, whiten
from mindsight.preprocess.pipeline import VARIANTS, PreprocessConfig, preprocess_subject

__all__ = [
    "VARIANTS",
    "PreprocessConfig",
    "inverse_sqrt",
    "ledoit_wolf_cov",
    "noise_covariance",
    "preprocess_subject",
    "whiten",
]
