"""Image reconstruction from brain embeddings: stage I prior, low-level pathway, stage II
generators, composed by :class:`ReconstructionPipeline` and run on a training run by
:func:`reconstruct_run` (``mindsight reconstruct``)."""

from mindsight.generate.base import Autoencoder, Generator, generator_names, load_generator
from mindsight.generate.lowlevel import LowLevelDecoder
from mindsight.generate.pipeline import Reconstruction, ReconstructionPipeline
from mindsight.generate.prior import DiffusionPrior, PriorConfig

__all__ = ["Autoencoder", "DiffusionPrior", "Generator", "LowLevelDecoder", "PriorConfig",
           "Reconstruction", "ReconstructionPipeline", "generator_names", "load_generator"]
