"""braindecode models as brain encoders: the model itself, then our residual projection head.

The braindecode model is built with ``n_outputs = hidden`` (its own classifier layer becomes a
linear read-out of that size) and :class:`ResidualProjector` maps it to the embedding, so every
model ends in the same LayerNorm'd embedding as ATM and NICE. (braindecode's BrainModule is not
wrapped here: ``brainmodule`` is Benchetrit et al.'s full model, in :mod:`.brainmodule`.)
"""

from __future__ import annotations

import inspect
import warnings

import torch
from torch import nn

from mindsight.encoders.base import ENCODERS
from mindsight.encoders.blocks import ResidualProjector
from mindsight.errors import DataFormatError

BRAINDECODE_MODELS = {
    "eegnet": ("EEGNet", "EEGNet (braindecode) + projection head"),
    "shallowfbcspnet": ("ShallowFBCSPNet", "ShallowFBCSPNet (braindecode) + projection head"),
    "eegconformer": ("EEGConformer", "EEG Conformer (braindecode) + projection head"),
    "atcnet": ("ATCNet", "ATCNet (braindecode) + projection head"),
}


class ProjectedModel(nn.Module):
    """A braindecode backbone followed by a residual projection head."""

    def __init__(self, backbone: nn.Module, hidden: int, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ResidualProjector(hidden, n_outputs, n_blocks=1, dropout=dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(x))


def _factory(class_name: str):
    def build(n_chans: int, n_times: int, sfreq: float, n_outputs: int, *, hidden: int = 512,
              head_dropout: float = 0.5, **params) -> ProjectedModel:
        import braindecode.models

        cls = getattr(braindecode.models, class_name)
        accepted = inspect.signature(cls).parameters
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise DataFormatError(
                f"braindecode {class_name}: unknown hyperparameter(s) {unknown}; it takes "
                f"{', '.join(k for k in accepted if k not in ('n_chans', 'n_outputs', 'n_times', 'sfreq'))}"
            )
        with warnings.catch_warnings():  # braindecode warns about missing chs_info/montages
            warnings.simplefilter("ignore")
            try:
                backbone = cls(n_chans=n_chans, n_outputs=hidden, n_times=n_times, sfreq=sfreq,
                               **params)
            except ValueError as exc:  # braindecode: the epoch is too short for its layers
                raise DataFormatError(
                    f"braindecode {class_name} cannot take {n_chans} channels × {n_times} samples "
                    f"at {sfreq:g} Hz: {exc}"
                ) from None
        return ProjectedModel(backbone, hidden, n_outputs, head_dropout)

    return build


for _name, (_cls, _desc) in BRAINDECODE_MODELS.items():
    ENCODERS.register(_name, description=_desc, braindecode=True)(_factory(_cls))
