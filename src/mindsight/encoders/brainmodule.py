"""Benchetrit, Banville & King's brain module (seed 001): MEG/EEG → a CLIP and an MSE embedding.

The network (Défossez et al.'s speech decoder, adapted to images by Benchetrit et al.)::

    x (C × T) ─ spatial attention over sensor positions (braindecode ChannelMerger) → V × T
              ─ 1×1 conv (V → V, no activation)
              ─ subject layer: a 1×1 conv of its own per subject (braindecode SubjectLayers)
              ─ 1×1 projection to ``hidden``, then braindecode's residual dilated conv blocks
                (BatchNorm + GELU, a GLU gate every ``glu`` layers)
              ─ two 1×1 convs with a GELU between them → F′ × T
              ─ temporal aggregation → F′   ('average' | 'affine' T → 1 | 'attention')
              ─ two MLP heads (LayerNorm-GELU-Linear blocks): CLIP head and MSE head → n_outputs

``forward`` returns the CLIP head (what retrieval uses); ``forward_heads`` returns both, and
:class:`~mindsight.train.model.AlignmentModel` trains the CLIP term of the loss on the first and
the MSE term on the second. The spatial attention needs the sensor positions, hence the channel
names (``ch_names``, 10-05 EEG or CTF MEG names; see :func:`mindsight.sensors.sensor_xy`).

Subjects: with ``n_subjects = S`` there are S subject matrices; subject index -1 (a subject not
seen in training, e.g. the held-out subject of leave-one-subject-out) or no index at all uses
their mean, as ATM does with its subject token. With ``n_subjects = 0`` there is one matrix
(the layer is kept, so the architecture does not depend on the protocol).

Defaults are small enough to train on a CPU. The paper's sizes, reachable through
``model.params``: ``n_virtual_channels=270, hidden=320, features=2048`` (F′),
``aggregation='affine'``; its retrieval model has two conv blocks (``depth=4``: braindecode
counts the two residual convolutions of a block separately, with a GLU after every second one;
Défossez et al.'s five blocks are ``depth=10``), ``spatial_dropout=0.2``, and
``pos_dim=2048`` (32 × 32 Fourier frequencies of the sensor positions). At 271 sensors → 768-d
that is 8.1 M parameters, 6.6 M without the MSE head (the paper reports 6.4 M for its retrieval
model); the defaults give 1.8 M. ``configs/brainmodule-meg.yaml`` sets the paper's values.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from mindsight.encoders.base import ENCODERS, BrainEncoder
from mindsight.errors import ConfigError, DataFormatError

AGGREGATIONS = ("average", "affine", "attention")


class TemporalAggregation(nn.Module):
    """(batch, features, times) → (batch, features).

    - ``average``: global average pooling over time;
    - ``affine``: a learned affine map of the time axis T → 1 (one weight per time sample,
      shared by all features, plus a bias), initialised to the average;
    - ``attention``: softmax weights over time from a learned 1×1 convolution of the features.
    """

    def __init__(self, kind: str, n_features: int, n_times: int) -> None:
        super().__init__()
        if kind not in AGGREGATIONS:
            raise ConfigError(
                f"brainmodule: unknown aggregation {kind!r}; available: {', '.join(AGGREGATIONS)}")
        self.kind = kind
        self.affine = self.score = None
        if kind == "affine":
            self.affine = nn.Linear(n_times, 1)
            nn.init.constant_(self.affine.weight, 1.0 / n_times)
            nn.init.zeros_(self.affine.bias)
        elif kind == "attention":
            self.score = nn.Conv1d(n_features, 1, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.affine is not None:
            return self.affine(h).squeeze(-1)
        if self.score is not None:
            weights = torch.softmax(self.score(h), dim=-1)  # (batch, 1, times)
            return (h * weights).sum(-1)
        return h.mean(-1)


def mlp_head(n_inputs: int, n_outputs: int, n_blocks: int = 1, hidden: int | None = None,
             dropout: float = 0.0) -> nn.Sequential:
    """``n_blocks`` LayerNorm-GELU-(Dropout)-Linear blocks, ``n_inputs`` → ``n_outputs``."""
    if n_blocks < 1:
        raise ConfigError(f"brainmodule: head_blocks must be >= 1, got {n_blocks}")
    dims = [n_inputs] + [hidden or n_inputs] * (n_blocks - 1) + [n_outputs]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:], strict=True):
        layers += [nn.LayerNorm(a), nn.GELU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def _conv_stack(n_in: int, n_times: int, sfreq: float, hidden: int, depth: int, kernel_size: int,
                dilation_growth: float, dilation_period: int, glu: int, glu_context: int,
                dropout: float) -> tuple[nn.Module, nn.Module]:
    """braindecode BrainModule's input projection (1×1 conv, ``n_in`` → ``hidden``) and its
    residual dilated conv blocks, taken from a BrainModule built for ``n_in`` input channels."""
    from braindecode.models import BrainModule as _BDBrainModule

    with warnings.catch_warnings():  # braindecode warns about the missing montage
        warnings.simplefilter("ignore")
        try:
            net = _BDBrainModule(
                n_chans=n_in, n_outputs=1, n_times=n_times, sfreq=sfreq, hidden_dim=hidden,
                depth=depth, kernel_size=kernel_size, dilation_growth=dilation_growth,
                dilation_period=dilation_period, conv_drop_prob=dropout, glu=glu,
                glu_context=glu_context,
            )
        except (ValueError, AssertionError) as exc:
            raise ConfigError(f"brainmodule: bad conv-block hyperparameters ({exc})") from None
    return net.input_projection, net.encoder


@ENCODERS.register(
    "brainmodule",
    description="Benchetrit et al. (seed 001): spatial attention, subject layer, dilated conv "
                "blocks (braindecode), temporal aggregation, CLIP + MSE heads",
)
class BrainModule(BrainEncoder):
    """Benchetrit et al.'s brain module; see the module docstring for the architecture."""

    closed_form = False
    needs_ch_names = True  # the spatial attention places the sensors by name
    subject_layers = True  # one subject matrix per training subject
    two_heads = True  # CLIP head (forward) and MSE head (forward_heads)

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 ch_names: Sequence[str] | None = None, n_subjects: int = 0,
                 spatial_attention: bool = True, n_virtual_channels: int | None = None,
                 pos_dim: int = 2048, spatial_dropout: float = 0.2,
                 subject_identity_init: bool = False,
                 hidden: int = 128, depth: int = 4, kernel_size: int = 3,
                 dilation_growth: float = 2, dilation_period: int = 5, glu: int = 2,
                 glu_context: int = 1, conv_dropout: float = 0.0,
                 features: int = 256, aggregation: str = "affine",
                 head_blocks: int = 1, head_hidden: int | None = None,
                 head_dropout: float = 0.0) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs, ch_names=ch_names,
                         n_subjects=n_subjects)
        from braindecode.modules import ChannelMerger, SubjectLayers

        n_virtual = int(n_virtual_channels or min(270, 2 * n_chans))
        if n_virtual < 1 or hidden < 1 or features < 1:
            raise ConfigError("brainmodule: n_virtual_channels, hidden and features must be >= 1")
        self.merger = None
        if spatial_attention:
            if not 0.0 <= spatial_dropout < 1.0:
                raise ConfigError(
                    f"brainmodule: spatial_dropout is a radius in [0, 1), got {spatial_dropout}")
            try:
                self.merger = ChannelMerger(n_virtual, pos_dim=pos_dim, dropout=spatial_dropout)
            except ValueError as exc:  # pos_dim must be 2·k² (k Fourier frequencies per axis)
                raise ConfigError(f"brainmodule: bad pos_dim {pos_dim} ({exc})") from None
            self.register_buffer("positions", self._positions(ch_names, n_chans))
        self.spatial_conv = nn.Conv1d(n_virtual if spatial_attention else n_chans, n_virtual, 1)
        self.subject_layer = SubjectLayers(n_virtual, n_virtual, max(1, self.n_subjects),
                                           init_id=subject_identity_init)
        self.input_projection, self.blocks = _conv_stack(
            n_virtual, n_times, sfreq, hidden, depth, kernel_size, dilation_growth, dilation_period, glu,
            glu_context, conv_dropout)
        self.final = nn.Sequential(nn.Conv1d(hidden, 2 * hidden, 1), nn.GELU(),
                                   nn.Conv1d(2 * hidden, features, 1))
        self.aggregate = TemporalAggregation(aggregation, features, n_times)
        self.clip_head = mlp_head(features, n_outputs, head_blocks, head_hidden, head_dropout)
        self.mse_head = mlp_head(features, n_outputs, head_blocks, head_hidden, head_dropout)

    @staticmethod
    def _positions(ch_names: Sequence[str] | None, n_chans: int) -> torch.Tensor:
        """(n_chans, 2) sensor positions in [0, 1] for the spatial attention."""
        from mindsight.sensors import sensor_xy

        if ch_names is None or len(ch_names) == 0:
            raise DataFormatError(
                "brainmodule: the spatial attention needs the channel names (ch_names, 10-05 EEG or "
                "CTF MEG names) to place the sensors; training passes the recording's names, or "
                "turn the attention off with model.params spatial_attention: false"
            )
        if len(ch_names) != n_chans:
            raise DataFormatError(
                f"brainmodule: {len(ch_names)} channel names for {n_chans} channels")
        return torch.as_tensor(sensor_xy(list(ch_names)), dtype=torch.float32)

    def subject_matrices(self, subject: torch.Tensor | None) -> torch.Tensor:
        """(batch, V, V) subject matrices, or one (V, V) matrix for ``subject=None``; unknown
        subjects (index -1) and ``None`` get the mean of the subjects' matrices."""
        table = self.subject_layer.weights  # (n_subjects, V, V)
        mean = table.mean(0)
        if subject is None:
            return mean
        known = (subject >= 0)[:, None, None]
        return torch.where(known, table[subject.clamp(min=0)], mean)

    def front_map(self, subject: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The spatial attention, 1×1 conv, subject layer and input projection composed into one
        linear map of the sensors: (weight, bias) of shape (hidden, C) and (hidden,), or
        (batch, hidden, C) and (batch, hidden) with per-trial subjects.

        All four stages are linear in x, so x goes through one (hidden × C) matrix instead of
        three (V × C)-sized maps and a projection: the same function and gradients, with about
        a third less arithmetic per step at MEG size. The attention weights are read by passing
        the identity through braindecode's ChannelMerger (one spatial-dropout draw per call, as
        upstream draws one per batch).
        """
        conv = self.spatial_conv.weight[:, :, 0]  # (V, C or V)
        if self.merger is not None:
            eye = torch.eye(self.n_chans, device=conv.device, dtype=conv.dtype)
            conv = conv @ self.merger(eye[None], self.positions[None])[0]  # (V, C)
        proj = self.input_projection.weight[:, :, 0]  # (hidden, V)
        if subject is None or self.n_subjects == 0:
            ps = proj @ self.subject_matrices(None).T  # (hidden, V)
            return ps @ conv, ps @ self.spatial_conv.bias + self.input_projection.bias
        # one composite per distinct subject in the batch, then gathered per trial
        uniq, inverse = torch.unique(subject, return_inverse=True)
        ps = proj @ self.subject_matrices(uniq).transpose(1, 2)  # (n_uniq, hidden, V)
        weight = (ps @ conv)[inverse]
        bias = (ps @ self.spatial_conv.bias + self.input_projection.bias)[inverse]
        return weight, bias

    def embed_time(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, F′, times): everything before the temporal aggregation."""
        weight, bias = self.front_map(subject)
        h = torch.matmul(weight, x) + bias[..., None]  # (batch, hidden, times)
        return self.final(self.blocks(h))

    def features(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, F′): the aggregated representation both heads read."""
        return self.aggregate(self.embed_time(x, subject))

    def forward_heads(self, x: torch.Tensor, subject: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(CLIP-head embedding, MSE-head embedding), each (batch, n_outputs)."""
        h = self.features(x, subject)
        return self.clip_head(h), self.mse_head(h)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """The CLIP-head embedding (retrieval)."""
        return self.clip_head(self.features(x, subject))

