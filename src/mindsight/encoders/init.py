"""Weight initialisation schemes by name, for an encoder's ``init`` hyperparameter.

Reproducing a published encoder means reproducing how it was initialised: NICE, for instance,
redraws every convolution and linear weight from N(0, 0.02) before training, which starts the
projector far from PyTorch's default scale. Each scheme changes ``module`` and its submodules in
place; ``"default"`` keeps what the layers' constructors drew.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from mindsight.errors import UnknownNameError

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
             nn.ConvTranspose3d, nn.Linear)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def raw_weight(module: nn.Module) -> torch.Tensor:
    """The stored weight: under a parametrization (e.g. braindecode's max-norm) the original
    tensor, since ``module.weight`` is then recomputed from it on every access."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations["weight"].original
    return module.weight


@torch.no_grad()
def normal_002(module: nn.Module) -> None:
    """NICE's ``weights_init_normal``: conv and linear weights ~ N(0, 0.02), their biases kept;
    batch-norm weights ~ N(1, 0.02), biases 0; everything else (LayerNorm, attention) kept."""
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            nn.init.normal_(raw_weight(m), 0.0, 0.02)
        elif isinstance(m, _BATCH_NORMS) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def glorot_zero_bias(module: nn.Module) -> None:
    """braindecode 0.8's model initialisation: every conv and linear weight Glorot-uniform,
    batch-norm weights 1, all biases 0 (braindecode 1.x keeps PyTorch's default for most
    conv weights instead)."""
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            nn.init.xavier_uniform_(raw_weight(m), gain=1)
        elif isinstance(m, _BATCH_NORMS) and m.weight is not None:
            nn.init.ones_(m.weight)
        if isinstance(m, _WEIGHTED + _BATCH_NORMS) and m.bias is not None:
            nn.init.zeros_(m.bias)


INITS: dict[str, Callable[[nn.Module], None]] = {
    "default": lambda module: None,
    "normal-0.02": normal_002,
    "glorot": glorot_zero_bias,
}


def check_init(scheme: str) -> str:
    """``scheme`` if it is a known scheme, else an error listing the known ones."""
    if scheme not in INITS:
        raise UnknownNameError(
            f"unknown weight initialisation {scheme!r}; available: {', '.join(INITS)}"
        )
    return scheme


def initialize(module: nn.Module, scheme: str) -> nn.Module:
    """Re-initialise ``module``'s weights in place with ``scheme`` (see :data:`INITS`)."""
    INITS[check_init(scheme)](module)
    return module
