"""Brain encoders: EEG/MEG epochs (batch, n_chans, n_times) → embedding (batch, n_outputs).

Every encoder is a :class:`BrainEncoder` subclass, built as ``build_encoder(name, n_chans=,
n_times=, sfreq=, n_outputs=, **params)`` (braindecode's convention) and registered in
:data:`ENCODERS` with one line. ``forward(x, subject=None)`` takes optional subject indices.
Each class states its capabilities, checked when it is registered (a class that breaks them
fails at import with :class:`~mindsight.errors.ContractError`):

- ``closed_form``: fitted by ``fit(x, y, x_val, y_val, score)`` instead of gradient descent
  (ridge);
- ``needs_ch_names``: takes the channel names, ``ch_names=`` (the brain module's spatial
  attention);
- ``subject_layers``: has per-subject parameters, ``n_subjects=`` (ATM's subject token, the
  brain module's subject layer);
- ``two_heads``: has an MSE head besides the CLIP head, ``forward_heads(x, subject)`` (see
  :class:`~mindsight.train.AlignmentModel`).

Adding an encoder: one module holding one ``BrainEncoder`` subclass, registered with
``@ENCODERS.register("name", description=...)``, and its import below.
"""

# importing the model modules registers them (braindecode itself is imported lazily)
from mindsight.encoders import atm, atm_e, blur, brainmodule, labram, linear, mlp, nice, zoo  # noqa: E402, F401
from mindsight.encoders.base import (
    ENCODERS,
    FIT_PARAMETERS,
    BrainEncoder,
    build_encoder,
    count_parameters,
    encoder_names,
    is_closed_form,
    needs_ch_names,
)

__all__ = ["ENCODERS", "FIT_PARAMETERS", "BrainEncoder", "build_encoder", "count_parameters",
           "encoder_names", "is_closed_form", "needs_ch_names"]
