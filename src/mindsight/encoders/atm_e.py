"""ATM-E (seed 002): self-attention across time, a time-mixing linear layer, braindecode's EEGNet,
residual projector.

The authors' ``ATM_E`` (ncclab-sustech/EEG_Image_decode, ``Retrieval/ATME_retrieval.py``) is not
ATM-S (:mod:`.atm`) with another convolution. Its attention runs across *time*: every sample is a
token whose features are the channel values (``d_model = n_chans``, one head, PyTorch's default
encoder layer), so the epoch keeps its (channels × time) shape. A linear layer then mixes each
channel's time course (the authors' ``subject_wise_linear[0]``, one layer shared by all
subjects), braindecode's EEGNet turns the epoch into ``eegnet_outputs`` features with its
classifier convolution (no softmax) and :class:`ResidualProjector` maps them to the embedding.
The defaults are the authors' sizes: 63 × 250 → 1024 has 4,519,689 parameters.

The authors ran braindecode 0.8.1's ``EEGNetv4``; braindecode 1.x's ``EEGNet`` has the same
layers and parameter shapes but constrains the spatial convolution's max-norm as a
differentiable parametrization and keeps PyTorch's default initialisation for most convolutions.
``eegnet_compat="0.8"`` (the default) restores 0.8.1's behaviour: the stored spatial weights are
renormalised in place before every forward pass, and all EEGNet weights start Glorot-uniform;
``"1.x"`` uses the installed EEGNet as it is.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

from mindsight.encoders.base import ENCODERS, BrainEncoder
from mindsight.encoders.blocks import ResidualProjector, sinusoidal_positions
from mindsight.encoders.init import initialize
from mindsight.errors import ConfigError, DataFormatError, UnknownNameError

EEGNET_COMPAT = ("0.8", "1.x")


class TemporalAttention(nn.Module):
    """Self-attention across time: (batch, n_chans, n_times) → the same shape.

    Each time sample is a token of ``n_chans`` features; a fixed sinusoidal table over time
    positions is added (no dropout), then ``n_layers`` PyTorch encoder layers with their defaults
    (post-norm, ReLU) and no final norm, as in the authors' ``EEGAttention``.
    """

    def __init__(self, n_chans: int, n_times: int, n_heads: int = 1, d_ff: int = 2048,
                 n_layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        if n_chans % n_heads:
            raise ConfigError(
                f"ATM-E: attention over time has d_model = n_chans = {n_chans}, which n_heads = "
                f"{n_heads} does not divide"
            )
        self.register_buffer("positions", sinusoidal_positions(n_times, n_chans), persistent=False)
        layer = nn.TransformerEncoderLayer(n_chans, n_heads, d_ff, dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer(x.transpose(1, 2) + self.positions).transpose(1, 2)


def _renorm_in_place(conv: nn.Module, args: tuple) -> None:
    """braindecode 0.8.1's max-norm: clip the stored weights' rows before the convolution runs
    (projected gradient descent), instead of 1.x's differentiable reparametrization."""
    conv.weight.data.copy_(conv.weight.data.renorm(p=2, dim=0, maxnorm=conv.max_norm))


def _eegnet_min_times(kernel_length: int) -> int:
    """Shortest epoch EEGNet takes: its temporal conv (padding k // 2), pooling by 4, depthwise
    conv of 16 (padding 8) and pooling by 8 must leave at least one sample."""
    n = 1
    while ((n + 2 * (kernel_length // 2) - kernel_length + 1) // 4 + 1) // 8 < 1:
        n += 1
    return n


def eegnet_features(n_chans: int, n_times: int, sfreq: float, n_outputs: int, *, F1: int,
                    D: int, F2: int, kernel_length: int, drop_prob: float,
                    compat: str = "0.8") -> nn.Module:
    """braindecode's EEGNet (v4) with a classifier convolution of ``n_outputs`` features and no
    softmax: (batch, n_chans, n_times) → (batch, n_outputs). ``compat`` as in the module doc."""
    from braindecode.models import EEGNet

    if compat not in EEGNET_COMPAT:
        raise UnknownNameError(
            f"unknown ATM-E eegnet_compat {compat!r}; available: {', '.join(EEGNET_COMPAT)}"
        )
    if n_times < _eegnet_min_times(kernel_length):
        raise DataFormatError(
            f"ATM-E: braindecode EEGNet pools time 32-fold and needs epochs of at least "
            f"{_eegnet_min_times(kernel_length)} samples (kernel_length={kernel_length}); "
            f"got {n_times}"
        )
    with warnings.catch_warnings():  # missing montage; the conv classifier's deprecation notice
        warnings.simplefilter("ignore")
        net = EEGNet(n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq,
                     final_conv_length="auto", pool_mode="mean", F1=F1, D=D, F2=F2,
                     kernel_length=kernel_length, drop_prob=drop_prob,
                     final_layer_with_constraint=False)
    if compat == "0.8":
        spatial = net.conv_spatial
        parametrize.remove_parametrizations(spatial, "weight", leave_parametrized=True)
        spatial.register_forward_pre_hook(_renorm_in_place)
        initialize(net, "glorot")
    return net


@ENCODERS.register("atm-e",
                   description="ATM-E (seed 002): temporal self-attention, braindecode EEGNet, projector")
class ATME(BrainEncoder):
    """ATM-E as the authors build it; see the module doc."""

    closed_form = False
    needs_ch_names = False
    subject_layers = False  # the authors' subject-wise linear layer is one layer shared by all
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 n_heads: int = 1, d_ff: int = 2048, n_layers: int = 1,
                 attn_dropout: float = 0.1, eegnet_outputs: int = 1440, F1: int = 8,
                 D: int = 20, F2: int = 160, kernel_length: int = 4,
                 eegnet_dropout: float = 0.25, eegnet_compat: str = "0.8",
                 proj_blocks: int = 1, proj_dropout: float = 0.5) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        self.attention = TemporalAttention(n_chans, n_times, n_heads, d_ff, n_layers,
                                           attn_dropout)
        self.time_linear = nn.Linear(n_times, n_times)
        self.eegnet = eegnet_features(n_chans, n_times, sfreq, eegnet_outputs, F1=F1, D=D, F2=F2,
                                      kernel_length=kernel_length, drop_prob=eegnet_dropout,
                                      compat=eegnet_compat)
        self.projector = ResidualProjector(eegnet_outputs, n_outputs, proj_blocks, proj_dropout)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        h = self.time_linear(self.attention(x))
        return self.projector(self.eegnet(h).reshape(x.shape[0], -1))

