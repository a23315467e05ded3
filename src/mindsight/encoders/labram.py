"""LaBraM (Jiang et al., ICLR 2024) as a brain encoder, fine-tuned as AVDE's stage 1 (seed 000).

The trunk is braindecode's :class:`braindecode.models.Labram` (not rewritten here): each
channel's epoch is cut into patches of 200 samples at 200 Hz, a temporal convolution embeds each
patch, a channel (position) embedding and a temporal embedding are added, and a transformer
(LaBraM-base: 12 blocks, 10 heads, width 200) reads the tokens; the mean of the patch tokens
(``mean_pooling``, AVDE's and LaBraM's fine-tuning default; else the [CLS] token) goes to our
:class:`~mindsight.encoders.blocks.ResidualProjector` head, as the braindecode zoo's models do.

**Channels.** LaBraM learned one position embedding per name of its channel table
(:data:`LABRAM_CHANNELS`, the first 128 names of ``standard_1020`` in 935963004/LaBraM's
``utils.py``, which is braindecode's ``LABRAM_CHANNEL_ORDER``). The montage's names are matched
case-insensitively and the rows of those channels are used (LaBraM's ``input_chans``); a channel
not in the table is refused with one line naming it.

**Sampling.** Inside ``forward`` each epoch is resampled to 200 Hz (polyphase, as
``scipy.signal.resample_poly``: :class:`Resampler`) and cut to a whole number of 200-sample
patches: the trailing remainder is dropped; an epoch shorter than one patch is zero-padded to one. THINGS-EEG2 at
250 Hz, 0–1 s (250 samples) becomes 200 samples, one patch: what AVDE feeds LaBraM (its
``eeg_data/preprocess_utils.py`` epochs −0.2–1.0 s from the 1000 Hz raw data, resamples to
200 Hz with MNE, 240 samples, and drops the first 40, leaving 0–1 s). EEG-ImageNet's 0.5 s at
1000 Hz (500 samples) becomes 100 samples, zero-padded to one patch: AVDE's code has no
EEG-ImageNet path, and a patch must stay 200 samples for the pretrained temporal convolution.

**Weights.** ``weights`` loads a pretrained trunk in either format, mapped by name: the original
``checkpoints/labram-base.pth`` (the model under ``'model'``, its keys prefixed ``student.``;
``pos_embed``, ``time_embed``, ``patch_embed.conv1.weight``, ``blocks.N.mlp.fc1.weight``...) or
braindecode's ``Labram`` state dict (``position_embedding``, ``temporal_embedding``,
``patch_embed.temporal_conv.conv1.weight``, ``blocks.N.mlp.0.weight``...) as .pt/.pth or
.safetensors. Without weights the model trains from scratch, and says so.

**Fine-tuning.** :meth:`Labram.param_groups` gives LaBraM's layer-wise learning-rate decay
(``LayerDecayValueAssigner``/``get_num_layer_for_vit`` in LaBraM's and AVDE's
``optim_factory.py``): with L blocks, block i's learning rate is lr·decay^(L−i); the [CLS]
token, the channel embedding and the patch embedding get lr·decay^(L+1); everything else (the
final norm, the temporal embedding, whose name ``time_embed`` that function does not list, and
our head) gets lr. As there, 1-D parameters, biases and the three embeddings get no weight
decay. ``freeze_trunk`` trains our head only.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mindsight.encoders.base import ENCODERS, BrainEncoder
from mindsight.encoders.blocks import ResidualProjector
from mindsight.errors import ConfigError, DataFormatError, MissingFileError
from mindsight.output import logger

SFREQ = 200.0  # Hz, LaBraM's sampling rate
PATCH = 200  # samples per patch (1 s at 200 Hz)

#: LaBraM's channel table: the first 128 names of ``standard_1020`` in LaBraM's ``utils.py``
#: (its position embedding has 128 + 1 rows, row 0 for [CLS]); braindecode's
#: ``LABRAM_CHANNEL_ORDER`` lists the same names in the same order.
LABRAM_CHANNELS = (
    "FP1", "FPZ", "FP2",
    "AF9", "AF7", "AF5", "AF3", "AF1", "AFZ", "AF2", "AF4", "AF6", "AF8", "AF10",
    "F9", "F7", "F5", "F3", "F1", "FZ", "F2", "F4", "F6", "F8", "F10",
    "FT9", "FT7", "FC5", "FC3", "FC1", "FCZ", "FC2", "FC4", "FC6", "FT8", "FT10",
    "T9", "T7", "C5", "C3", "C1", "CZ", "C2", "C4", "C6", "T8", "T10",
    "TP9", "TP7", "CP5", "CP3", "CP1", "CPZ", "CP2", "CP4", "CP6", "TP8", "TP10",
    "P9", "P7", "P5", "P3", "P1", "PZ", "P2", "P4", "P6", "P8", "P10",
    "PO9", "PO7", "PO5", "PO3", "PO1", "POZ", "PO2", "PO4", "PO6", "PO8", "PO10",
    "O1", "OZ", "O2", "O9", "CB1", "CB2",
    "IZ", "O10", "T3", "T5", "T4", "T6", "M1", "M2", "A1", "A2",
    "CFC1", "CFC2", "CFC3", "CFC4", "CFC5", "CFC6", "CFC7", "CFC8",
    "CCP1", "CCP2", "CCP3", "CCP4", "CCP5", "CCP6", "CCP7", "CCP8",
    "T1", "T2", "FTT9h", "TTP7h", "TPP9h", "FTT10h", "TPP8h", "TPP10h",
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP2-F8", "F8-T8", "T8-P8", "P8-O2",
)
_INDEX = {name.upper(): i for i, name in enumerate(LABRAM_CHANNELS)}

# original LaBraM name → braindecode name (prefixes; the rest of a key is the same in both)
_ORIGINAL_TO_BRAINDECODE = (
    ("pos_embed", "position_embedding"),
    ("time_embed", "temporal_embedding"),
    ("patch_embed.", "patch_embed.temporal_conv."),
)
# keys neither trunk uses: the pretraining heads, the masked-modelling token, a classifier
_NOT_TRUNK = ("head.", "final_layer.", "lm_head.", "projection_head.", "mask_token", "logit_scale")
_NO_WEIGHT_DECAY = ("cls_token", "position_embedding", "temporal_embedding")  # LaBraM's no_weight_decay


def labram_channel_index(ch_names: Sequence[str]) -> list[int]:
    """Row of each channel in LaBraM's channel table (case-insensitive); a name it lacks raises
    :class:`ConfigError` naming every such channel."""
    unknown = [n for n in ch_names if str(n).upper() not in _INDEX]
    if unknown:
        raise ConfigError(
            f"labram: channel(s) {', '.join(unknown)} are not in LaBraM's channel table (10-20/"
            "10-05 names such as FP1, CZ, PO8, T3); rename them to their 10-20 names or drop them "
            "with data.channels")
    return [_INDEX[str(n).upper()] for n in ch_names]


def patch_layout(n_times: int, sfreq: float) -> tuple[int, int]:
    """(samples at 200 Hz, patches): an epoch of ``n_times`` samples at ``sfreq`` Hz resampled to
    200 Hz, and the whole 200-sample patches it is cut to (at least one: shorter epochs are
    zero-padded)."""
    n200 = max(1, round(n_times * SFREQ / sfreq))
    return n200, max(1, n200 // PATCH)


class Resampler(nn.Module):
    """Polyphase resampling along the last axis from ``sfreq`` to ``target`` Hz, as
    ``scipy.signal.resample_poly``: upsample by ``up``, low-pass with a Kaiser-windowed sinc
    (β 5, 10 zero crossings per side, cut-off at the lower Nyquist), keep every ``down``-th
    sample. The edges are mirror-padded first (a whole number of ``down`` periods, so the samples
    stay aligned), not zero-padded, so an epoch's ends are not pulled to zero. Identity when the
    rates agree."""

    def __init__(self, sfreq: float, target: float = SFREQ) -> None:
        super().__init__()
        ratio = Fraction(target / sfreq).limit_denominator(1000)
        self.up, self.down = ratio.numerator, ratio.denominator
        if self.up == self.down:
            self.register_buffer("kernel", torch.ones(1, 1, 1), persistent=False)
            return
        from scipy.signal import firwin

        half = 10 * max(self.up, self.down)
        taps = firwin(2 * half + 1, 1.0 / max(self.up, self.down), window=("kaiser", 5.0)) * self.up
        self.half = half
        self.register_buffer("kernel", torch.tensor(taps, dtype=torch.float32).view(1, 1, -1),
                             persistent=False)

    def n_out(self, n_in: int) -> int:
        """Samples of the resampled signal (``ceil(n_in · up / down)``)."""
        return -(-n_in * self.up // self.down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up == self.down:
            return x
        shape, n = x.shape[:-1], x.shape[-1]
        flat = x.reshape(-1, 1, n).to(self.kernel.dtype)
        pad = self.down * -(-(self.half // self.up + 1) // self.down)  # input samples per side
        flat = F.pad(flat, (pad, pad), mode="reflect" if pad < n else "replicate")
        if self.up > 1:  # zero insertion
            flat = torch.stack([flat, *[torch.zeros_like(flat)] * (self.up - 1)], -1).flatten(-2)
        y = F.conv1d(F.pad(flat, (self.half, self.half)), self.kernel, stride=self.down)
        skip = pad * self.up // self.down
        return y[..., skip:skip + self.n_out(n)].reshape(*shape, -1).to(x.dtype)


@ENCODERS.register("labram", description="LaBraM (braindecode's Labram; pretrained weights optional) "
                                         "+ projection head; layer-wise lr decay (AVDE stage 1)")
class Labram(BrainEncoder):
    """LaBraM trunk (braindecode) + residual projection head; see the module doc.

    Hyperparameters: ``weights`` (a pretrained file, either format; None: from scratch),
    ``layer_decay`` (0.8, AVDE; 1: none), ``freeze_trunk``, the trunk's size (LaBraM-base:
    ``num_layers`` 12, ``num_heads`` 10, ``conv_out_channels`` 8 → width 200, ``mlp_ratio`` 4;
    pretrained weights need these), its regularisation (``drop_path`` 0.1, ``drop``,
    ``attn_drop``, ``init_values`` 0.1: AVDE's), ``qkv_bias`` (False: AVDE's
    ``--disable_qkv_bias``), ``mean_pooling`` and the head (``proj_blocks``, ``head_dropout``).
    """

    closed_form = False
    pretrained_option = "weights"
    needs_ch_names = True
    subject_layers = False
    two_heads = False

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 ch_names: Sequence[str] | None = None, weights: str | None = None,
                 layer_decay: float = 0.8, freeze_trunk: bool = False, num_layers: int = 12,
                 num_heads: int = 10, conv_out_channels: int = 8, mlp_ratio: float = 4.0,
                 drop_path: float = 0.1, drop: float = 0.0, attn_drop: float = 0.0,
                 init_values: float = 0.1, qkv_bias: bool = False, mean_pooling: bool = True,
                 proj_blocks: int = 1, head_dropout: float = 0.5) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs, ch_names=ch_names)
        if ch_names is None or len(ch_names) != n_chans:
            raise ConfigError(f"labram needs the names of the {n_chans} channels (got "
                              f"{'none' if ch_names is None else len(ch_names)}): LaBraM's channel "
                              "embedding is chosen by name")
        if not 0 < layer_decay <= 1:
            raise ConfigError(f"labram: layer_decay must be in (0, 1], got {layer_decay}")
        if conv_out_channels % 4:
            raise ConfigError(f"labram: conv_out_channels must be a multiple of 4 (GroupNorm of 4 "
                              f"groups), got {conv_out_channels}")
        from braindecode.models import Labram as BraindecodeLabram

        self.n200, self.n_patches = patch_layout(n_times, sfreq)
        self.resample = Resampler(sfreq)
        self.layer_decay, self.freeze_trunk = float(layer_decay), bool(freeze_trunk)
        self.register_buffer("input_chans",
                             torch.tensor([0] + [i + 1 for i in labram_channel_index(ch_names)]),
                             persistent=False)
        with warnings.catch_warnings():  # braindecode warns about missing chs_info
            warnings.simplefilter("ignore")
            self.trunk = BraindecodeLabram(
                n_times=self.n_patches * PATCH, n_outputs=0, n_chans=n_chans, sfreq=SFREQ,
                patch_size=PATCH, conv_out_channels=conv_out_channels, num_layers=num_layers,
                num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                drop_prob=drop, attn_drop_prob=attn_drop, drop_path_prob=drop_path,
                init_values=init_values, use_mean_pooling=mean_pooling)
        self.head = ResidualProjector(self.trunk.embed_dim, n_outputs, n_blocks=proj_blocks,
                                      dropout=head_dropout)
        self.pretrained = weights
        if weights is not None:
            load_labram_weights(self.trunk, weights)
        if self.freeze_trunk:
            self.trunk.requires_grad_(False)

    def train(self, mode: bool = True) -> Labram:
        """A frozen trunk stays in eval mode (no drop-path or dropout in features it does not
        learn)."""
        super().train(mode)
        if self.freeze_trunk:
            self.trunk.eval()
        return self

    def to_patches(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, n_chans, n_times) at ``sfreq`` → (batch, n_chans, n_patches · 200) at 200 Hz:
        resampled, then the trailing remainder dropped (or zeros appended up to one patch)."""
        x = self.resample(x)[..., :self.n200]
        n = self.n_patches * PATCH
        return x[..., :n] if x.shape[-1] >= n else F.pad(x, (0, n - x.shape[-1]))

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.trunk.forward_features(self.to_patches(x), input_chans=self.input_chans)
        return self.head(feats)

    def layer_id(self, name: str) -> int:
        """LaBraM's layer of trunk parameter ``name`` (``get_num_layer_for_vit``): 0 for the
        [CLS] token, channel and patch embeddings, i+1 for block i, L+1 for the rest."""
        if name in ("cls_token", "position_embedding") or name.startswith("patch_embed."):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return len(self.trunk.blocks) + 1

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser groups with LaBraM's layer-wise learning-rate decay and weight-decay
        exemptions (see the module doc); frozen parameters are left out. Groups without a
        ``weight_decay`` key take the optimiser's. Called when training starts, so this is
        where training from scratch is announced (not when a trained model is rebuilt)."""
        if self.pretrained is None:
            logger.warning("labram: no pretrained weights; LaBraM trains from scratch (set the "
                           "encoder parameter `weights` to labram-base.pth or braindecode's "
                           "Labram state dict)")
        n_layers = len(self.trunk.blocks)
        groups: dict[tuple[int, bool], dict[str, Any]] = {}
        named = [(f"trunk.{k}", k, p) for k, p in self.trunk.named_parameters()]
        named += [(f"head.{k}", None, p) for k, p in self.head.named_parameters()]
        for _, trunk_name, p in named:
            if not p.requires_grad:
                continue
            layer = n_layers + 1 if trunk_name is None else self.layer_id(trunk_name)
            decay = not (p.ndim <= 1 or (trunk_name or "").endswith(".bias")
                         or trunk_name in _NO_WEIGHT_DECAY)
            group = groups.setdefault((layer, decay), {
                "params": [], "lr": lr * self.layer_decay ** (n_layers + 1 - layer)})
            if not decay:
                group["weight_decay"] = 0.0
            group["params"].append(p)
        return [groups[k] for k in sorted(groups)]


def _read_weights(path: Path) -> dict[str, Any]:
    """The tensors of a weights file: safetensors, or a torch file read by the restricted
    loader; a container's model under 'model', 'module' or 'state_dict' is taken out."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise DataFormatError(f"{path}: not a readable safetensors file ({exc})") from None
    from mindsight.io.tensors import read_torch

    obj = read_torch(path)
    for key in ("model", "module", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return obj


def labram_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The trunk tensors of a LaBraM weights file under braindecode's key names, and the format
    found ('original' or 'braindecode'). Keys outside the trunk (pretraining heads, classifier,
    mask token) are kept under their names for the caller to report."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"labram weights {path} do not exist; set the encoder parameter "
                               "`weights` to labram-base.pth (935963004/LaBraM, checkpoints/) or a "
                               "braindecode Labram state dict")
    raw = {str(k): v for k, v in _read_weights(path).items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("student.") for k in raw):  # LaBraM's pretraining model: its student
        raw = {k[len("student."):]: v for k, v in raw.items() if k.startswith("student.")}
    if raw and all(k.startswith("module.") for k in raw):  # saved from DistributedDataParallel
        raw = {k[len("module."):]: v for k, v in raw.items()}
    raw = {k: v for k, v in raw.items() if "relative_position_index" not in k}
    if "position_embedding" in raw or any(k.startswith("patch_embed.temporal_conv.") for k in raw):
        return raw, "braindecode"
    if "pos_embed" in raw or any(k.startswith("patch_embed.conv1.") for k in raw):
        out = {}
        for key, value in raw.items():
            for old, new in _ORIGINAL_TO_BRAINDECODE:
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            out[key.replace(".mlp.fc1.", ".mlp.0.").replace(".mlp.fc2.", ".mlp.2.")] = value
        return out, "original"
    raise DataFormatError(
        f"{path}: neither LaBraM's checkpoint (keys such as pos_embed, patch_embed.conv1.weight, "
        "optionally under 'model' with a 'student.' prefix) nor braindecode's Labram state dict "
        f"(position_embedding, patch_embed.temporal_conv.conv1.weight); found {len(raw)} tensor "
        f"key(s){', e.g. ' + ', '.join(sorted(raw)[:3]) if raw else ''}")


def load_labram_weights(trunk: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load pretrained LaBraM weights (either format) into braindecode's ``Labram`` ``trunk`` by
    name; returns and logs the trunk keys the file lacks ('missing') and the file's keys the
    trunk has no place for ('unexpected'). A tensor whose shape does not fit raises
    :class:`DataFormatError` naming the file, key and shapes."""
    state, kind = labram_state_dict(path)
    own = trunk.state_dict()
    temporal = state.get("temporal_embedding")
    if temporal is not None and "temporal_embedding" in own:
        need = own["temporal_embedding"].shape[1]
        if temporal.ndim == 3 and temporal.shape[1] >= need:  # LaBraM keeps 16 rows; we use the first
            state["temporal_embedding"] = temporal[:, :need]
        else:
            raise DataFormatError(
                f"{path}: temporal_embedding has shape {tuple(temporal.shape)}, too few rows for "
                f"{need - 1} patch(es) of 200 samples; use a shorter epoch (data.tmin/tmax)")
    for key, value in state.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise DataFormatError(
                f"{path}: {key} has shape {tuple(value.shape)} but this LaBraM needs "
                f"{tuple(own[key].shape)}; the file is another LaBraM size (e.g. large: width 400, "
                "24 blocks): set num_layers, num_heads and conv_out_channels to its size, or use "
                "labram-base.pth")
    fitting = {k: v for k, v in state.items() if k in own}
    trunk.load_state_dict(fitting, strict=False)
    report = {"missing": sorted(set(own) - set(fitting)), "unexpected": sorted(set(state) - set(own))}
    logger.info("labram: loaded %d tensors from %s (%s format)", len(fitting), path, kind)
    if report["missing"]:
        logger.warning("labram: %s lacks %d trunk tensor(s), left as initialised: %s", path,
                       len(report["missing"]), ", ".join(report["missing"]))
    if report["unexpected"]:
        logger.info("labram: ignored %d tensor(s) of %s outside the trunk: %s", len(report["unexpected"]),
                    path, ", ".join(report["unexpected"]))
    return report
