"""Brain encoders: EEG/MEG epochs (batch, n_chans, n_times) → embedding (batch, n_outputs).

Every encoder is a plain ``nn.Module`` built as ``build_encoder(name, n_chans=, n_times=,
sfreq=, n_outputs=, **params)`` (braindecode's convention) and listed in :data:`ENCODERS`.
``forward(x, subject=None)`` takes optional subject indices; encoders without subject tokens
ignore them. Encoders registered with ``needs_ch_names=True`` (the brain module's spatial
attention) also take ``ch_names``; encoders with a ``forward_heads(x, subject)`` method have a
second (MSE) head besides the one ``forward`` returns (see :class:`~mindsight.train.AlignmentModel`).
"""

# importing the model modules registers them (braindecode itself is imported lazily)
from mindsight.encoders import atm, atm_e, blur, brainmodule, linear, mlp, nice, zoo  # noqa: E402, F401
from mindsight.encoders.base import (
    ENCODERS,
    build_encoder,
    count_parameters,
    encoder_names,
    is_closed_form,
    needs_ch_names,
)

__all__ = ["ENCODERS", "build_encoder", "count_parameters", "encoder_names", "is_closed_form",
           "needs_ch_names"]
