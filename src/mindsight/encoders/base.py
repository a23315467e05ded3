"""The encoder registry and the one way to build an encoder from its name."""

from __future__ import annotations

import types
import typing
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
    _check_types(name, entry.factory, params)
    try:
        return entry.factory(
            n_chans=int(n_chans), n_times=int(n_times), sfreq=float(sfreq),
            n_outputs=int(n_outputs), **params,
        )
    except TypeError as exc:
        if not _raised_by_the_call(exc):
            raise  # a TypeError inside a constructor is a bug to see, not the user's parameters
        raise DataFormatError(f"encoder {name!r}: bad hyperparameters {params} ({exc})") from None


def _check_types(name: str, factory: Any, params: dict[str, Any]) -> None:
    """Refuse hyperparameters whose value does not have the type the encoder's constructor
    annotates (the class a factory returns), e.g. ``d_model: 'wide'`` for an int."""
    try:
        cls = typing.get_type_hints(factory).get("return")
        hints = typing.get_type_hints(cls.__init__) if isinstance(cls, type) else {}
    except Exception:  # unresolvable annotations: nothing to check against
        return
    for key, value in params.items():
        hint = hints.get(key)
        allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        plain = [t for t in allowed if t in (int, float, str, bool, type(None))]
        if not plain or len(plain) != len(allowed):
            continue  # only simple annotations are checked
        ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in plain)
        ok = ok or (float in plain and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in plain)
            raise DataFormatError(
                f"encoder {name!r}: hyperparameter {key!r} must be {names}, got {value!r}")


def _raised_by_the_call(exc: TypeError) -> bool:
    """Whether ``exc`` was raised by calling a constructor with arguments it does not take
    (unknown, missing or repeated keywords): then the innermost frame of the traceback is still
    the caller's, since the callee's body never started."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    frame = tb.tb_frame
    module = frame.f_globals.get("__name__", "")
    return module.startswith("mindsight.encoders") and not frame.f_code.co_name == "__init__"


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
