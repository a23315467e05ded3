"""The encoder registry and the one way to build an encoder from its name."""

from __future__ import annotations

from typing import Any

from torch import nn

from mindsight.errors import DataFormatError
from mindsight.registry import Registry

ENCODERS: Registry[nn.Module] = Registry("brain encoder")


def build_encoder(
    name: str, *, n_chans: int, n_times: int, sfreq: float, n_outputs: int, **params: Any
) -> nn.Module:
    """Build encoder ``name`` for epochs of ``n_chans`` × ``n_times`` at ``sfreq`` Hz.

    ``params`` are the encoder's own hyperparameters (see ``mindsight models``); an unknown
    name lists the available ones.
    """
    for key, value in {"n_chans": n_chans, "n_times": n_times, "n_outputs": n_outputs}.items():
        if int(value) < 1:
            raise DataFormatError(f"encoder {name!r}: {key} must be >= 1, got {value}")
    entry = ENCODERS.entry(name)
    try:
        return entry.factory(
            n_chans=int(n_chans), n_times=int(n_times), sfreq=float(sfreq),
            n_outputs=int(n_outputs), **params,
        )
    except TypeError as exc:
        raise DataFormatError(f"encoder {name!r}: bad hyperparameters {params} ({exc})") from None


def encoder_names(**tags: Any) -> list[str]:
    return ENCODERS.names(**tags)


def is_closed_form(name: str) -> bool:
    """True for encoders fitted in closed form (ridge) rather than by gradient descent."""
    return bool(ENCODERS.entry(name).tags.get("closed_form", False))


def needs_ch_names(name: str) -> bool:
    """True for encoders that take the channel names (``ch_names=``), e.g. for sensor positions."""
    return bool(ENCODERS.entry(name).tags.get("needs_ch_names", False))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
