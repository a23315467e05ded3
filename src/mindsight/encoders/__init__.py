"""Brain encoders: EEG/MEG epochs (batch, n_chans, n_times) → embedding (batch, n_outputs).

Every encoder is a plain ``nn.Module`` built as ``build_encoder(name, n_chans=, n_times=,
sfreq=, n_outputs=, **params)`` (braindecode's convention) and listed in :data:`ENCODERS`.
``forward(x, subject=None)`` takes optional subject indices; encoders without subject tokens
ignore them.
"""

# importing the model modules registers them (braindecode itself is imported lazily)
from mindsight.encoders import atm, linear, mlp, nice, zoo  # noqa: E402, F401
from mindsight.encoders.base import (
    ENCODERS,
    build_encoder,
    count_parameters,
    encoder_names,
    is_closed_form,
)

__all__ = ["ENCODERS", "build_encoder", "count_parameters", "encoder_names", "is_closed_form"]
