"""What every image generator offers the reconstruction pipeline, and the generator registry.

A generator turns image embeddings (of one named embedding space, e.g. ``efficientnet-lite0``
or ``clip-vit-h-14``) into pictures, optionally starting from an initial image (img2img, the
low-level pathway's blurry image). It also owns the image autoencoder whose latents the
low-level pathway regresses from brain data. Images are float tensors (n, 3, H, W) in [0, 1].

A generator is one :class:`Generator` subclass registered in :data:`GENERATORS`; the class
declares what the rest of mindsight needs to know without building it: whether it works
offline, which option of :meth:`Generator.load` a weight path or hub id given on the command
line (``mindsight reconstruct --weights``) fills, and whether its conditioning can be fine-tuned on
brain embeddings (``finetunes``: AVDE's stage 2, :meth:`Generator.finetune`).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from mindsight.errors import ContractError
from mindsight.registry import Contract, Registry, import_modules

if TYPE_CHECKING:
    from mindsight.generate.finetune import FinetuneConfig

FINETUNE_PARAMETERS = ("train_cond", "train_images", "val_cond", "val_images")


class Autoencoder(ABC):
    """Image ↔ latent map of a generator: the low-level pathway's target space."""

    image_size: int  # side in pixels of the images it encodes and decodes
    latent_shape: tuple[int, int, int]  # (channels, height, width)

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, image_size, image_size) in [0, 1] → (n, *latent_shape)."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(n, *latent_shape) → (n, 3, image_size, image_size) in [0, 1]."""


class Generator(Contract, ABC):
    """Image embeddings (+ optional initial images and captions) → images.

    Declared by every registered subclass: ``name`` (its registry name), ``offline`` (``True``
    when it runs without downloading anything) and ``weights_option`` (the keyword of
    :meth:`load` that a weight file, folder or hub id fills: ``mindsight reconstruct --weights``)
    and ``finetunes`` (``True`` exactly when the class overrides :meth:`finetune`,
    :meth:`finetuned_state` and :meth:`load_finetuned_state`).
    """

    declares: ClassVar[tuple[str, ...]] = ("name", "offline", "weights_option", "finetunes")
    name: ClassVar[str | None] = None
    offline: ClassVar[bool | None] = None
    weights_option: ClassVar[str | None] = None
    finetunes: ClassVar[bool | None] = None
    embedding_model: str  # the mindsight image embedder whose space conditions the generator
    embedding_dim: int
    image_size: int  # side in pixels of the generated images
    autoencoder: Autoencoder

    @classmethod
    def check_contract(cls) -> None:
        super().check_contract()
        params = inspect.signature(cls.load).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if cls.weights_option not in params and not takes_any:
            raise ContractError(f"{cls.__module__}.{cls.__qualname__}.weights_option is "
                                f"{cls.weights_option!r}, which is not an option of its load()")
        where = f"{cls.__module__}.{cls.__qualname__}"
        overridden = [m for m in ("finetune", "finetuned_state", "load_finetuned_state")
                      if getattr(cls, m) is not getattr(Generator, m)]
        if cls.finetunes and len(overridden) < 3:
            lacking = sorted({"finetune", "finetuned_state", "load_finetuned_state"} - set(overridden))
            raise ContractError(f"{where} declares finetunes = True but does not override {', '.join(lacking)}")
        if not cls.finetunes and overridden:
            raise ContractError(f"{where} declares finetunes = False but overrides {', '.join(overridden)} "
                                "(declare finetunes = True, or remove them)")
        if cls.finetunes:
            params = tuple(inspect.signature(cls.finetune).parameters)[1:5]
            if params != FINETUNE_PARAMETERS:
                raise ContractError(f"{where}.finetune takes ({', '.join(params)}, ...); a generator's "
                                    f"finetune takes ({', '.join(FINETUNE_PARAMETERS)}, *, config, seed)")

    @classmethod
    @abstractmethod
    def load(cls, device: str = "cpu", **options: Any) -> Generator:
        """The generator ready on ``device``; ``options`` are the subclass' own (weights, sizes)."""

    @abstractmethod
    def generate(self, embeddings: torch.Tensor, *, init_images: torch.Tensor | None = None,
                 strength: float = 0.8, captions: Sequence[str] | None = None,
                 guidance_scale: float | None = None, steps: int | None = None,
                 seed: int = 0) -> torch.Tensor:
        """Images (n, 3, image_size, image_size) in [0, 1] for ``embeddings`` (n, embedding_dim).

        ``init_images`` (n, 3, h, w) in [0, 1], any size, start generation from a noised copy
        (img2img): ``strength`` 1 ignores them, 0 returns them unchanged. ``None`` for
        ``guidance_scale`` or ``steps`` means the generator's default. Same seed, same images.
        """

    def finetune(self, train_cond: torch.Tensor, train_images: torch.Tensor, val_cond: torch.Tensor,
                 val_images: torch.Tensor, *, config: FinetuneConfig | None = None,
                 seed: int = 0) -> dict[str, Any]:
        """AVDE's stage 2 (generators with ``finetunes = True``): re-fit the generator's
        conditioning in place so that it generates image ``i`` from condition ``i``.

        ``train_cond`` (n, embedding_dim): frozen brain embeddings of the training trials, row
        ``i`` for the picture ``train_images[i]`` ((n, 3, h, w) in [0, 1], any size); ``val_cond``
        and ``val_images`` the validation concepts' pairs, which select the kept weights (and stop
        training early). ``config`` says what is trained and how
        (:class:`~mindsight.generate.finetune.FinetuneConfig`). Returns a JSON-able record (at
        least ``val_loss_before`` and ``val_loss``); afterwards :meth:`generate` takes brain
        embeddings.
        """
        raise NotImplementedError(f"generator {self.name!r} cannot be fine-tuned on brain embeddings "
                                  "(finetunes = False)")

    def finetuned_state(self) -> dict[str, torch.Tensor]:
        """The tensors :meth:`finetune` changed (to cache them in the fold folder)."""
        raise NotImplementedError(f"generator {self.name!r} has no fine-tuned state (finetunes = False)")

    def load_finetuned_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        """Put back what :meth:`finetuned_state` returned (and :meth:`finetune`'s record)."""
        raise NotImplementedError(f"generator {self.name!r} has no fine-tuned state (finetunes = False)")

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The generator's networks by part name (for parameter counts and devices)."""

    def parameter_counts(self) -> dict[str, int]:
        return {k: sum(p.numel() for p in m.parameters()) for k, m in self.modules().items()}

    def describe(self) -> dict[str, Any]:
        """JSON-able summary recorded with every reconstruction."""
        return {"name": self.name, "embedding_model": self.embedding_model,
                "embedding_dim": self.embedding_dim, "image_size": self.image_size,
                "latent_shape": list(self.autoencoder.latent_shape),
                "parameters": self.parameter_counts()}


GENERATORS: Registry[Generator] = Registry(
    "generator", base=Generator, load=import_modules("mindsight.generate.generators"))


def load_generator(name: str, device: str = "cpu", **kwargs: Any) -> Generator:
    """Build the generator registered as ``name`` (see ``generator_names()``)."""
    return generator_class(name).load(device=device, **kwargs)


def generator_class(name: str) -> type[Generator]:
    """The class registered as ``name``: its declarations, without building it."""
    return GENERATORS.get(name)


def weights_options(name: str, weights: str | None) -> dict[str, str]:
    """The :meth:`Generator.load` options that put ``weights`` (a file, folder or hub id; None:
    the generator's default) where generator ``name`` declares it goes."""
    return {} if weights is None else {generator_class(name).weights_option: str(weights)}


def generator_names() -> list[str]:
    return GENERATORS.names()
