"""One interface for image and text embedders, and the registry of backends.

An image embedder turns pictures into vectors (``embed_images``), a text embedder turns strings
into vectors (``embed_texts``); CLIP models are both. Every backend is registered under a short
name with its modality, embedding size and whether its weights work offline::

    from mindsight.embed import load_embedder
    model = load_embedder("efficientnet-lite0")          # real ImageNet weights, offline
    vectors = model.embed_images(["a.jpg", "b.jpg"])     # (2, 1280) float32

Hub backends (CLIP, DINOv2) load real weights on machines with network access; passing
``config=`` builds the same architecture from a small config with random weights (tests).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.errors import DataFormatError, MissingFileError, UnknownNameError
from mindsight.registry import Registry, import_modules

ImageLike = Any  # a path or a PIL image
DEFAULT_IMAGE_MODEL = "efficientnet-lite0"
DEFAULT_TEXT_MODEL = "minilm"
DEFAULT_TEMPLATE = "This picture is {}"  # ATM's prompt for concept names


class Embedder(ABC):
    """Common state of every backend: its registry name, output size and device."""

    name: str
    dim: int
    device: str = "cpu"
    batch_size: int = 32


class ImageEmbedder(Embedder):
    """Pictures → vectors. Backends define ``transform`` (PIL → tensor) and ``encode_batch``."""

    transform: Callable[[Any], Any]

    @abstractmethod
    def encode_batch(self, pixels: Any) -> Any:
        """(batch, 3, H, W) tensor on ``self.device`` → (batch, dim) tensor."""

    def load_batch(self, images: Sequence[ImageLike]) -> Any:
        """Open (if paths) and preprocess images into one (batch, 3, H, W) tensor."""
        import torch

        return torch.stack([self.transform(open_image(im)) for im in images])

    def encode(self, pixels: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.encode_batch(pixels.to(self.device))
        return out.float().cpu().numpy()

    def embed_images(self, images: Sequence[ImageLike], batch_size: int | None = None) -> np.ndarray:
        """(n, dim) float32 embeddings of ``images`` (paths or PIL images)."""
        bs = batch_size or self.batch_size
        parts = [self.encode(self.load_batch(images[i : i + bs])) for i in range(0, len(images), bs)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


class TextEmbedder(Embedder):
    """Strings → vectors."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(n, dim) float32 embeddings of ``texts``."""


def open_image(image: ImageLike) -> Any:
    """A PIL RGB image from a path or an image, with a clear error for unreadable files."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise MissingFileError(f"{path}: image not found")
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (UnidentifiedImageError, OSError) as exc:
            raise DataFormatError(f"{path}: not a readable image ({exc})") from None
    return image.convert("RGB")


# the backends register themselves when imported: on the registry's first lookup
EMBEDDERS: Registry[Embedder] = Registry("embedder", load=import_modules("mindsight.embed.backends"))


def load_embedder(name: str, device: str = "cpu", **kwargs: Any) -> Embedder:
    """Build a registered embedder by name (``mindsight models`` lists them)."""
    return EMBEDDERS.build(name, device=resolve_device(device), **kwargs)


def embedder_names(modality: str) -> list[str]:
    """Registered embedders of ``modality`` ('image' or 'text')."""
    return [e.name for e in EMBEDDERS if modality in e.tags["modality"]]


def has_modality(name: str, modality: str) -> bool:
    """Whether registered embedder ``name`` embeds ``modality`` (an unknown name lists all)."""
    return modality in EMBEDDERS.entry(name).tags["modality"]


def check_modality(name: str, modality: str) -> None:
    """Refuse names that are not registered ``modality`` embedders, listing the ones that are."""
    if not has_modality(name, modality):
        noun = "images" if modality == "image" else "text"
        raise UnknownNameError(
            f"{name!r} does not embed {noun}; {modality} embedders: {', '.join(embedder_names(modality))}"
        )


def _load_for(modality: str, name: str, device: str, **kwargs: Any) -> Embedder:
    check_modality(name, modality)
    return load_embedder(name, device, **kwargs)


def load_image_embedder(name: str = DEFAULT_IMAGE_MODEL, device: str = "cpu", **kwargs: Any) -> ImageEmbedder:
    """An image embedder by name; a text-only name is refused with the list of image embedders."""
    return _load_for("image", name, device, **kwargs)  # type: ignore[return-value]


def load_text_embedder(name: str = DEFAULT_TEXT_MODEL, device: str = "cpu", **kwargs: Any) -> TextEmbedder:
    """A text embedder by name; an image-only name is refused with the list of text embedders."""
    return _load_for("text", name, device, **kwargs)  # type: ignore[return-value]


def image_embedder_names() -> list[str]:
    return embedder_names("image")


def text_embedder_names() -> list[str]:
    return embedder_names("text")


def resolve_device(device: str) -> str:
    """``'auto'`` → ``'cuda'`` when available, else ``'cpu'``; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
