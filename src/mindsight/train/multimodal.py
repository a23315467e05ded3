"""The multimodal brain side of CognitionCapturerPro (CogCapPro): one embedding per modality
(image, text, edge, depth, ...) and a fusion of them in the image model's space.

A run with ``model.modalities`` trains, from the same brain epochs,

- one embedding per modality, each aligned (the run's contrastive loss) with that modality's
  features: the image model's embedding of the picture, of its edge map or of its depth map, or
  the text model's embedding of the concept name (``mindsight.embed.modalities``). Either one
  registered encoder (the *trunk*) followed by one small MLP head per modality (``trunk:
  shared``: Linear → GELU → Linear), or one registered encoder per modality (``trunk:
  separate``: the authors' code, four independent encoders; their modality-side projection is
  the identity);
- with ``uncertainty``, each image-kind modality has three levels (low, medium, high foveated
  blur) and its own :class:`~mindsight.train.image_side.UncertaintyBlurPrior` picks each training
  pair's level from the EMA of the pair's logit (evaluation: the medium level), as the authors'
  ``_uncertainty_aware`` does per modality;
- a fusion encoder modelled on the authors' ``CogcapFusion``: per modality Linear → LayerNorm →
  GELU, a sinusoidal code per modality slot, a post-norm transformer encoder over the modality
  tokens, mean pooling, a residual GELU MLP, LayerNorm and a Linear to the image model's size.
  Its inputs are the modality embeddings *detached* (the authors detach the EEG embeddings
  entering their fusion, so the fusion loss trains the fusion alone); at training time
  ``mask_count`` modalities, drawn uniformly once per batch, are zeroed (the authors'
  ``torch.randperm`` masking). It is trained against the image model's features of the sharp
  picture (the *fused target*, the space a generator is conditioned in) with
  ``fusion_weight``·CLIP + ``fusion_mse``·MSE + ``fusion_cos``·(1 − cos): the authors' STH-Align
  loss (MSE + 0.5·(1 − cos)) plus the contrastive term, because the fused embedding is also what
  retrieval ranks.

The loss is Σ_m ``weights[m]``·(the run's loss between modality m's embedding and its target)
+ the fused terms; with ``text_epochs`` the text-kind modalities' term is dropped from that epoch
on (the authors stop the text loss after epoch 30). One AdamW over every parameter equals the
authors' per-modality optimisers here: the terms share no parameter (separate trunks; the
fusion's inputs are detached) or, with a shared trunk, are summed into it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mindsight.config import build_dataclass
from mindsight.encoders.base import param_groups_with_rest
from mindsight.encoders.blocks import Dropout, sinusoidal_positions
from mindsight.errors import ConfigError
from mindsight.train.image_side import FixedSide, ImageSide, UncertaintyBlurPrior
from mindsight.train.losses import ContrastiveLoss, clip_loss

TRUNKS = ("shared", "separate")
KINDS = ("image", "text")
FUSED = "fused"  # the key of the fused embedding beside the modality names


@dataclass
class MultimodalConfig:
    """``model.multimodal``: the multimodal head's parameters (defaults: the authors' values
    where they have one)."""

    trunk: str = "shared"  # 'shared': one encoder + a head per modality; 'separate': one encoder each
    weights: dict[str, float] = field(default_factory=dict)  # per modality (missing: 1.0)
    uncertainty: bool = False  # per-modality UBP blur relabelling over (low, medium, high) blur
    gamma: float = 0.3  # EMA factor of the pair logits
    z: float = 1.959964  # thresholds at the batch mean ± z·std (α = 0.05)
    head_hidden: int = 1024  # hidden size of the shared trunk's per-modality MLP heads
    fusion_hidden: int = 255
    fusion_layers: int = 2
    fusion_heads: int = 1
    fusion_ff: int = 510
    fusion_dropout: float = 0.1
    mask_count: int = 1  # modalities zeroed before the fusion, per training batch
    fusion_weight: float = 1.0  # CLIP term of the fused embedding
    fusion_mse: float = 1.0
    fusion_cos: float = 0.5
    depth_model: str | None = None  # the depth modality's model (None: the default)
    text_epochs: int | None = None  # the text-kind modalities' term is dropped from this epoch on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def multimodal_config(raw: dict[str, Any] | None, modalities: Sequence[str],
                      where: str = "config: model.multimodal") -> MultimodalConfig:
    """``raw`` checked and resolved for ``modalities``: unknown keys and bad values refused in
    one line naming the key, ``weights`` given for every modality (1.0 unless set)."""
    cfg = build_dataclass(MultimodalConfig, dict(raw or {}), where)
    n = len(modalities)
    if not isinstance(cfg.weights, dict):
        raise ConfigError(f"{where}: weights must map modality names to numbers, got {cfg.weights!r}")
    unknown = sorted(set(cfg.weights) - set(modalities))
    if unknown:
        raise ConfigError(f"{where}: weights names {', '.join(unknown)}, not in model.modalities "
                          f"({', '.join(modalities)})")
    weights = {}
    for m in modalities:
        try:
            weights[m] = float(cfg.weights.get(m, 1.0))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: weights.{m} must be a number, got {cfg.weights[m]!r}") from None
    cfg.weights = weights
    checks = [
        (cfg.trunk in TRUNKS, f"trunk must be one of {TRUNKS}, got {cfg.trunk!r}"),
        (all(w >= 0 for w in weights.values()), f"weights must be >= 0, got {weights}"),
        (0 < cfg.gamma <= 1, f"gamma must be in (0, 1], got {cfg.gamma}"),
        (cfg.z > 0, f"z must be > 0, got {cfg.z}"),
        (cfg.head_hidden >= 1, f"head_hidden must be >= 1, got {cfg.head_hidden}"),
        (cfg.fusion_hidden >= 1 and cfg.fusion_heads >= 1 and cfg.fusion_hidden % cfg.fusion_heads == 0,
         f"fusion_hidden ({cfg.fusion_hidden}) must be a positive multiple of fusion_heads "
         f"({cfg.fusion_heads})"),
        (cfg.fusion_layers >= 1, f"fusion_layers must be >= 1, got {cfg.fusion_layers}"),
        (cfg.fusion_ff >= 1, f"fusion_ff must be >= 1, got {cfg.fusion_ff}"),
        (0 <= cfg.fusion_dropout < 1, f"fusion_dropout must be in [0, 1), got {cfg.fusion_dropout}"),
        (0 <= cfg.mask_count < max(n, 1),
         f"mask_count must be in [0, {max(n - 1, 0)}] (at least one of the {n} modalities stays), "
         f"got {cfg.mask_count}"),
        (min(cfg.fusion_weight, cfg.fusion_mse, cfg.fusion_cos) >= 0,
         "fusion_weight, fusion_mse and fusion_cos must be >= 0"),
        (cfg.text_epochs is None or cfg.text_epochs >= 0,
         f"text_epochs must be >= 0 or null, got {cfg.text_epochs}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"{where}: {message}")
    return cfg


@dataclass(frozen=True)
class ModalityLevels:
    """One modality of a run: its name, kind ('image' or 'text') and feature levels
    (``model@view`` names: three blur levels low, medium, high, or one)."""

    name: str
    kind: str
    levels: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"modality {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.levels) not in (1, 3):
            raise ConfigError(f"modality {self.name!r}: one level or three (low, medium, high blur), "
                              f"got {len(self.levels)}: {', '.join(self.levels)}")


def spec_modalities(spec: Any) -> list[ModalityLevels] | None:
    """The modalities a :class:`~mindsight.train.model.ModelSpec` was trained with (None for a
    single-target model): what retraining it on other data (the analyses) passes on."""
    if not spec.modalities:
        return None
    out, start = [], 0
    for name, kind, k in zip(spec.modalities, spec.modality_kinds, spec.modality_levels, strict=True):
        out.append(ModalityLevels(name, kind, tuple(spec.levels[start : start + k])))
        start += k
    return out


def mlp_head(n_inputs: int, hidden: int, n_outputs: int) -> nn.Sequential:
    """A modality head on the shared trunk: Linear → GELU → Linear."""
    return nn.Sequential(nn.Linear(n_inputs, hidden), nn.GELU(), nn.Linear(hidden, n_outputs))


class ModalityEncoders(nn.Module):
    """Brain epochs → one embedding per modality (a dict in modality order).

    ``trunk='shared'``: ``build(image_dim)`` (the registered encoder) then one
    :func:`mlp_head` per modality; ``'separate'``: ``build(dim_m)`` per modality. It stands where
    an :class:`~mindsight.train.model.AlignmentModel` keeps its encoder, so it answers
    :meth:`param_groups` (the trunks' groups, and the heads with the optimiser's defaults).
    """

    two_heads = False

    def __init__(self, build: Callable[[int], nn.Module], dims: dict[str, int], image_dim: int, *,
                 trunk: str = "shared", head_hidden: int = 1024) -> None:
        super().__init__()
        self.names = list(dims)
        self.trunk_kind = trunk
        if trunk == "shared":
            self.trunk = build(image_dim)
            self.heads = nn.ModuleDict({m: mlp_head(image_dim, head_hidden, d) for m, d in dims.items()})
        else:
            self.trunks = nn.ModuleDict({m: build(d) for m, d in dims.items()})

    def forward(self, *inputs: Any) -> dict[str, torch.Tensor]:
        if self.trunk_kind == "shared":
            h = self.trunk(*inputs)
            return {m: head(h) for m, head in self.heads.items()}
        return {m: enc(*inputs) for m, enc in self.trunks.items()}

    def encoders(self) -> list[nn.Module]:
        return [self.trunk] if self.trunk_kind == "shared" else list(self.trunks.values())

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The encoders' parameter groups and one group of the heads; one plain group of every
        trainable parameter when no encoder overrides its groups."""
        return param_groups_with_rest([g for enc in self.encoders() for g in enc.param_groups(lr)], self)


def modality_mask(n: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) bool, True for the modalities kept: ``count`` of ``n`` dropped, drawn uniformly
    (one ``randperm``, as the authors draw once per batch)."""
    keep = torch.ones(n, dtype=torch.bool)
    if count > 0:
        keep[torch.randperm(n, generator=generator)[:count]] = False
    return keep


class FusionEncoder(nn.Module):
    """CogcapFusion over the modality embeddings (see the module doc): (batch, dim_m) per
    modality → (batch, n_outputs)."""

    def __init__(self, dims: Sequence[int], n_outputs: int, *, hidden: int = 255, layers: int = 2,
                 heads: int = 1, ff: int = 510, dropout: float = 0.1) -> None:
        super().__init__()
        self.inputs = nn.ModuleList(
            nn.Sequential(nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU()) for d in dims)
        self.register_buffer("positions", sinusoidal_positions(len(dims), hidden), persistent=False)
        layer = nn.TransformerEncoderLayer(hidden, heads, ff, dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.residual = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), Dropout(dropout))
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, n_outputs)

    def forward(self, feats: Sequence[torch.Tensor], keep: torch.Tensor | None = None) -> torch.Tensor:
        """Fused embedding of ``feats`` (one tensor per modality); modalities with ``keep[i]``
        False enter as zeros."""
        tokens = [proj(f if keep is None or bool(keep[i]) else torch.zeros_like(f))
                  for i, (proj, f) in enumerate(zip(self.inputs, feats, strict=True))]
        h = self.transformer(torch.stack(tokens, 1) + self.positions).mean(1)
        return self.out(self.norm(h + self.residual(h)))


class ModalityTargets(nn.Module):
    """Feature levels → per-modality targets: each modality's levels through its own image side
    (:class:`UncertaintyBlurPrior` for three blur levels, the level as it is for one), and the
    last level, the fused target, as it is.

    ``levels`` is the flat list a run aligns with: each modality's levels in order, then the
    fused target's.
    """

    def __init__(self, modalities: Sequence[str], n_levels: Sequence[int], level_dims: Sequence[int],
                 n_pairs: int, *, gamma: float = 0.3, z: float = 1.959964) -> None:
        super().__init__()
        if sum(n_levels) + 1 != len(level_dims):
            raise ConfigError(f"modalities {list(modalities)} have {sum(n_levels)} levels in all, "
                              f"plus the fused target: expected {sum(n_levels) + 1} level sizes, "
                              f"got {len(level_dims)}")
        self.names = list(modalities)
        self.slices: dict[str, slice] = {}
        start = 0
        sides: dict[str, ImageSide] = {}
        for m, k in zip(self.names, n_levels, strict=True):
            self.slices[m] = slice(start, start + k)
            dims = list(level_dims[start : start + k])
            sides[m] = (UncertaintyBlurPrior(dims, dims[0], n_pairs, gamma=gamma, z=z, eval_level=1)
                        if k == 3 else FixedSide(dims, dims[0], n_pairs))
            start += k
        self.sides = nn.ModuleDict(sides)
        self.dims = {m: int(level_dims[self.slices[m].start]) for m in self.names}

    def split(self, levels: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Each modality's levels, and the fused target's (one) under :data:`FUSED`."""
        out = {m: list(levels[sl]) for m, sl in self.slices.items()}
        out[FUSED] = [levels[-1]]
        return out

    @torch.no_grad()
    def tables(self, levels: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Evaluation targets per modality (medium blur with uncertainty) and the fused one."""
        was = self.training
        self.eval()
        parts = self.split(levels)
        out = {m: self.sides[m](parts[m]).float() for m in self.names}
        out[FUSED] = parts[FUSED][0].float()
        self.train(was)
        return out

    def train_targets(self, levels: Sequence[torch.Tensor], images: torch.Tensor, pairs: torch.Tensor,
                      outputs: dict[str, torch.Tensor],
                      pair_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                      ) -> dict[str, torch.Tensor]:
        """Targets of training pairs ``pairs`` showing image rows ``images``; sides that adapt
        (UBP) see each pair's logit between the modality embedding ``outputs[m]`` and its target."""
        parts = self.split(levels)
        out = {}
        for m in self.names:
            side = self.sides[m]
            target = side.train_targets([lv[images] for lv in parts[m]], pairs)
            if side.observes:
                side.observe(pairs, pair_logits(outputs[m].detach(), target.detach()))
            out[m] = target
        out[FUSED] = parts[FUSED][0][images]
        return out

    def summary(self) -> dict[str, Any]:
        """Each adapting side's level counts, suffixed with its modality (``ubp_low_image``)."""
        return {f"{k}_{m}": v for m in self.names for k, v in self.sides[m].summary().items()}


def multimodal_loss(loss: ContrastiveLoss, outputs: dict[str, torch.Tensor],
                    targets: dict[str, torch.Tensor], fused: torch.Tensor, weights: dict[str, float],
                    cfg: MultimodalConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Σ_m ``weights[m]``·``loss``(modality m, its target) + the fused terms, and the parts
    (detached, unweighted: ``loss_<modality>``, ``fused_clip``, ``fused_mse``, ``fused_cos``,
    ``loss_fused``). A modality of weight 0 is scored without a graph, so its parameters get
    no gradient (a separate optimiser not stepped, as the authors' text optimiser after
    ``text_epochs``)."""
    total = fused.new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for m, out in outputs.items():
        w = weights.get(m, 0.0)
        if w > 0:
            term, _ = loss(out, targets[m])
            total = total + w * term
        else:
            with torch.no_grad():
                term, _ = loss(out, targets[m])
        parts[f"loss_{m}"] = term.detach()
    target = targets[FUSED]
    f_clip = clip_loss(fused, target, loss.scale(), normalize_brain=loss.normalize_brain, exp=False)
    f_mse = F.mse_loss(fused, target)
    f_cos = 1 - F.cosine_similarity(fused, target, dim=1).mean()
    fused_total = cfg.fusion_weight * f_clip + cfg.fusion_mse * f_mse + cfg.fusion_cos * f_cos
    total = total + fused_total
    parts.update(fused_clip=f_clip.detach(), fused_mse=f_mse.detach(), fused_cos=f_cos.detach(),
                 loss_fused=fused_total.detach())
    return total, parts
