"""Numeric precision of training: bf16 autocast and TF32 where they pay, fp32 elsewhere.

``train.precision``:

``auto``  bf16 autocast (and TF32 matrix products) on a CUDA GPU that supports bf16; fp32 on
          CPUs, where bf16 autocast is slower on most machines and changes results;
``bf16``  bf16 autocast wherever it runs (CPU included);
``fp32``  full precision everywhere (TF32 off).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from mindsight.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")


def uses_bf16(precision: str, device: torch.device | str) -> bool:
    if precision not in PRECISIONS:
        raise ConfigError(f"train.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    if precision == "auto":
        return kind == "cuda" and torch.cuda.is_bf16_supported()
    return precision == "bf16"


def autocast_context(precision: str, device: torch.device | str) -> Any:
    """The context a training step runs in (reusable: enter it once per step); on CUDA, TF32
    is switched on unless ``precision`` is ``fp32``."""
    kind = torch.device(device).type
    if kind == "cuda":
        tf32 = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if not uses_bf16(precision, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=kind, dtype=torch.bfloat16)
