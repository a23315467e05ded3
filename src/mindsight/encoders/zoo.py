"""braindecode models as brain encoders: the model itself, then our residual projection head.

The braindecode model is built with ``n_outputs = hidden`` (its own classifier layer becomes a
linear read-out of that size) and :class:`ResidualProjector` maps it to the embedding, so every
model ends in the same LayerNorm'd embedding as ATM and NICE. (braindecode's BrainModule is not
wrapped here: ``brainmodule`` is Benchetrit et al.'s full model, in :mod:`.brainmodule`.)

Wrapping another braindecode model is a three-line subclass of :class:`BraindecodeEncoder`
naming it in ``braindecode_class``, registered with one line like those below.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from mindsight.encoders.base import ENCODERS, BrainEncoder
from mindsight.encoders.blocks import ResidualProjector
from mindsight.errors import ConfigError, DataFormatError

_SHAPE_ARGS = ("n_chans", "n_outputs", "n_times", "sfreq")


def braindecode_backbone(class_name: str, n_chans: int, n_times: int, sfreq: float,
                         n_outputs: int, params: dict[str, Any]) -> nn.Module:
    """``braindecode.models.<class_name>`` for this input, with ``n_outputs`` outputs and its
    own hyperparameters ``params`` (unknown ones are refused, listing the ones it takes)."""
    import braindecode.models

    cls = getattr(braindecode.models, class_name)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"braindecode {class_name}: unknown hyperparameter(s) {unknown}; it takes "
            f"{', '.join(k for k in accepted if k not in _SHAPE_ARGS)}"
        )
    with warnings.catch_warnings():  # braindecode warns about missing chs_info/montages
        warnings.simplefilter("ignore")
        try:
            return cls(n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq, **params)
        except ValueError as exc:  # braindecode: the epoch is too short for its layers
            raise DataFormatError(
                f"braindecode {class_name} cannot take {n_chans} channels × {n_times} samples "
                f"at {sfreq:g} Hz: {exc}"
            ) from None


class BraindecodeEncoder(BrainEncoder):
    """A braindecode backbone (``braindecode_class``, of ``hidden`` outputs) followed by a
    residual projection head (dropout ``head_dropout``); other keywords go to the backbone."""

    declares: ClassVar[tuple[str, ...]] = (*BrainEncoder.declares, "braindecode_class")
    braindecode_class: ClassVar[str | None] = None  # the name in braindecode.models
    closed_form = False
    needs_ch_names = False
    subject_layers = False
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 hidden: int = 512, head_dropout: float = 0.5, **params: Any) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        self.backbone = braindecode_backbone(self.braindecode_class, n_chans, n_times, sfreq,
                                             hidden, params)
        self.head = ResidualProjector(hidden, n_outputs, n_blocks=1, dropout=head_dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(x))


@ENCODERS.register("eegnet", description="EEGNet (braindecode) + projection head")
class EEGNetEncoder(BraindecodeEncoder):
    braindecode_class = "EEGNet"


@ENCODERS.register("shallowfbcspnet", description="ShallowFBCSPNet (braindecode) + projection head")
class ShallowFBCSPNetEncoder(BraindecodeEncoder):
    braindecode_class = "ShallowFBCSPNet"


@ENCODERS.register("eegconformer", description="EEG Conformer (braindecode) + projection head")
class EEGConformerEncoder(BraindecodeEncoder):
    braindecode_class = "EEGConformer"


@ENCODERS.register("atcnet", description="ATCNet (braindecode) + projection head")
class ATCNetEncoder(BraindecodeEncoder):
    braindecode_class = "ATCNet"
