"""Errors mindsight raises for bad input: each message names the file, key, shape or value at
fault and, where there is one, what to do about it."""

from __future__ import annotations


class MindsightError(Exception):
    """Base class: the command line prints these without a traceback."""


class DataFormatError(MindsightError, ValueError):
    """A file exists but does not hold what its layout promises (key, shape, dtype, values)."""


class ConfigError(MindsightError, ValueError):
    """A run configuration (YAML, ``--set``, flags or arguments) names an impossible value; the
    message names the key and the accepted values."""


class MissingFileError(MindsightError, FileNotFoundError):
    """A file or directory the layout needs is not there."""


class UnknownNameError(MindsightError, ValueError):
    """A registry lookup failed; the message lists the available names."""


class WeightsUnavailableError(MindsightError, RuntimeError):
    """Pretrained weights could not be loaded (typically: no network access to the model hub)."""


class LeakageError(MindsightError, ValueError):
    """An evaluation would let test data select a model, or mix training and test concepts."""


class ContractError(MindsightError, TypeError):
    """A registered extension (encoder, dataset, view, generator, analysis) breaks the contract
    of its base class: raised at import, when the class is registered."""
