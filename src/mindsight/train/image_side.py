"""The image side: image features of one or several *levels* → the targets brain embeddings align with.

A level is one (image model, view) feature table (``efficientnet-lite0@gauss-k21``,
``evnet@sharp``; :func:`mindsight.embed.features.level_tables`). The image side turns the levels
of a batch of images into one target per image:

- ``fixed``: the first level as it is (every method before the blur priors);
- ``ubp``: UBP's uncertainty-aware blur prior (Wu et al., CVPR 2025; ``main.py``): per training
  pair an exponential moving average (γ = 0.3) of the pair's logit; pairs whose logit falls
  below the batch mean − z·std (z for α = 0.05) get the more-blurred level next time, pairs
  above mean + z·std the less-blurred one, the rest the medium level; test images get the
  medium level. Levels are UBP's (low, medium, high) blur.
- ``multiblur``: the multi-level blur paper's image module (Liu et al., AAAI 2026;
  ``models/Encoder.py: get_image_feature``): per-dimension softmax weights over the levels plus
  four learned constant levels, then a dropout MLP adapter (D → 768 → D, ELU, dropout 0.85). It
  sees no labels, so test images go through it too and retrieval stays zero-shot. Levels whose
  size differs from the first (EVNet's features, seed 003's ``multiblur-evnet``) join through a
  learned linear map to that size (seed 003 does not say how; mindsight's choice).

Adding an image side: a subclass of :class:`ImageSide` stating ``learned`` and ``observes`` and
implementing ``forward``, and one ``@IMAGE_SIDES.register`` line; the registry checks the class
when it is registered.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mindsight.errors import ConfigError, ContractError
from mindsight.registry import Contract, Registry


class ImageSide(nn.Module, Contract, metaclass=abc.ABCMeta):
    """Levels → targets. ``forward`` gives the evaluation targets (deterministic in eval mode);
    :meth:`train_targets` the training targets of a batch of training pairs; :meth:`observe`
    sees each batch's pair logits (for rules that adapt to them).

    Every registered subclass states, as class attributes checked at registration:

    - ``learned``: it has parameters trained with the encoder (closed-form encoders refuse it);
    - ``observes``: it adapts to the pair logits, so it overrides :meth:`observe` (and only then).
    """

    declares: ClassVar[tuple[str, ...]] = ("learned", "observes")
    learned: ClassVar[bool | None] = None
    observes: ClassVar[bool | None] = None

    def __init__(self, level_dims: list[int], n_outputs: int, n_pairs: int = 0) -> None:
        super().__init__()
        self.level_dims, self.n_outputs, self.n_pairs = list(level_dims), int(n_outputs), int(n_pairs)

    @abc.abstractmethod
    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """The evaluation targets (n_images, n_outputs) of images with feature ``levels`` (one
        (n_images, dim) tensor per level)."""

    def train_targets(self, levels: list[torch.Tensor], pairs: torch.Tensor) -> torch.Tensor:
        """Targets of training pairs ``pairs`` (indices of the training samples) whose image
        levels are ``levels``."""
        return self(levels)

    def observe(self, pairs: torch.Tensor, logits: torch.Tensor) -> None:
        """The diagonal logits (brain · its target) of a training batch."""

    def summary(self) -> dict[str, Any]:
        """What to log at the end of an epoch (e.g. how many pairs each level serves)."""
        return {}

    @classmethod
    def check_contract(cls) -> None:
        """Beyond stating ``learned`` and ``observes``: both are booleans, and ``observe`` is
        overridden exactly when ``observes`` is True."""
        super().check_contract()
        where = f"{cls.__module__}.{cls.__qualname__}"
        for name in ImageSide.declares:
            if not isinstance(getattr(cls, name), bool):
                raise ContractError(f"{where}: {name} must be True or False, got {getattr(cls, name)!r}")
        overrides = cls.observe is not ImageSide.observe
        if cls.observes != overrides:
            raise ContractError(
                f"{where} declares observes = {cls.observes} but "
                f"{'overrides' if overrides else 'does not override'} observe(pairs, logits)")


IMAGE_SIDES: Registry[ImageSide] = Registry("image side (method)", base=ImageSide)


@IMAGE_SIDES.register("fixed", description="the first level's features as they are (ATM, NICE, ...)")
class FixedSide(ImageSide):
    """The first level as it is."""

    learned = False
    observes = False

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return levels[0]


@IMAGE_SIDES.register("ubp", description="UBP's uncertainty-aware blur prior (Wu et al., CVPR 2025)")
class UncertaintyBlurPrior(ImageSide):
    """UBP's selection rule over (low, medium, high) blur levels; see the module doc.

    ``sim`` is the EMA of each pair's logit (initialised to 1, as UBP's ``self.sim``); ``level``
    the level each pair gets the next time it is drawn (initially the medium one). A pair is
    drawn once per epoch, so updating its level when it is seen gives UBP's epoch-wise update.
    """

    learned = False
    observes = True

    def __init__(self, level_dims: list[int], n_outputs: int, n_pairs: int = 0, *,
                 gamma: float = 0.3, z: float = 1.959964, eval_level: int = 1) -> None:
        super().__init__(level_dims, n_outputs, n_pairs)
        if len(level_dims) < 3:
            raise ConfigError(f"image side 'ubp' needs three levels (low, medium, high blur; "
                                  f"model.image_views: [ubp]), got {len(level_dims)}")
        self.gamma, self.z, self.eval_level = float(gamma), float(z), int(eval_level)
        self.register_buffer("sim", torch.ones(max(n_pairs, 1)))
        self.register_buffer("level", torch.full((max(n_pairs, 1),), self.eval_level, dtype=torch.long))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return levels[self.eval_level]

    def train_targets(self, levels: list[torch.Tensor], pairs: torch.Tensor) -> torch.Tensor:
        stack = torch.stack(levels[:3], 1)  # (batch, 3, dim): low, medium, high blur
        return stack[torch.arange(len(pairs), device=stack.device), self.level[pairs]]

    @torch.no_grad()
    def observe(self, pairs: torch.Tensor, logits: torch.Tensor) -> None:
        ema = self.gamma * logits + (1 - self.gamma) * self.sim[pairs]
        self.level[pairs] = self.select(logits, ema)
        self.sim[pairs] = ema

    def select(self, logits: torch.Tensor, ema: torch.Tensor) -> torch.Tensor:
        """UBP's rule: the batch's EMA values ``ema`` set the bounds mean ± z·std (sample std);
        pairs whose *current* logit is above the upper bound get level 0 (less blur), below the
        lower bound level 2 (more blur), the rest level 1."""
        mean, std = ema.mean(), ema.std() if len(ema) > 1 else ema.new_zeros(())
        out = torch.ones_like(logits, dtype=torch.long)
        out[logits > mean + self.z * std] = 0
        out[logits < mean - self.z * std] = 2
        return out

    def summary(self) -> dict[str, Any]:
        counts = torch.bincount(self.level, minlength=3).tolist()
        return {"ubp_low": counts[0], "ubp_medium": counts[1], "ubp_high": counts[2]}


@IMAGE_SIDES.register("multiblur", description="multi-level blur: learned level weights + MLP adapter (Liu et al., AAAI 2026)")
class MultiLevelBlur(ImageSide):
    """The multi-level blur image module; see the module doc. ``n_constant`` learned constant
    levels join the feature levels (the authors' ``default_feature``, initially zero); level
    weights are initialised uniform in [0, 1) per dimension before the softmax (``learned_scale``)."""

    learned = True
    observes = False

    def __init__(self, level_dims: list[int], n_outputs: int, n_pairs: int = 0, *,
                 hidden: int = 768, dropout: float = 0.85, n_constant: int = 4) -> None:
        super().__init__(level_dims, n_outputs, n_pairs)
        self.project = nn.ModuleList(
            nn.Identity() if d == n_outputs else nn.Linear(d, n_outputs) for d in level_dims)
        self.constant = nn.Parameter(torch.zeros(n_constant, n_outputs))
        self.weight = nn.Parameter(torch.rand(len(level_dims) + n_constant, n_outputs))
        self.adapter = nn.Sequential(nn.Linear(n_outputs, hidden), nn.ELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, n_outputs))

    def level_weights(self) -> torch.Tensor:
        """(n_levels + n_constant, dim) softmax weights over the levels, per dimension."""
        return torch.softmax(self.weight, 0)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        # the authors mix L2-normalised CLIP features (process_image.py stores them normalised)
        feats = [p(F.normalize(f, dim=1)) for p, f in zip(self.project, levels, strict=True)]
        n = len(feats[0])
        stack = torch.stack(feats + list(self.constant[:, None].expand(-1, n, -1)), 0)  # (L, n, dim)
        return self.adapter((self.level_weights()[:, None] * stack).sum(0))

    def summary(self) -> dict[str, Any]:
        w = self.level_weights().mean(1).tolist()
        return {f"level_{i}": round(v, 4) for i, v in enumerate(w)}


def build_image_side(name: str, level_dims: list[int], n_outputs: int, n_pairs: int = 0,
                     **params: Any) -> ImageSide:
    """Image side ``name`` for levels of sizes ``level_dims``; an unknown name lists the others."""
    cls = IMAGE_SIDES.get(name)
    try:
        return cls(level_dims, n_outputs, n_pairs, **params)
    except TypeError as exc:
        raise ConfigError(f"image side {name!r}: bad parameters {params} ({exc})") from None
