"""DINOv2 self-supervised image features (transformers): the layer-normalised CLS token.

``config=`` (a ``Dinov2Config`` keyword dict) builds a random-weight model for offline tests.
"""

from __future__ import annotations

from typing import Any

from mindsight._torch_compat import ensure_torchvision
from mindsight.embed.backends._transforms import IMAGENET_MEAN, IMAGENET_STD, resize_crop_normalize
from mindsight.embed.base import EMBEDDERS, ImageEmbedder
from mindsight.errors import WeightsUnavailableError


class Dinov2(ImageEmbedder):
    batch_size = 32

    def __init__(self, name: str, repo: str, device: str = "cpu", config: dict | None = None) -> None:
        ensure_torchvision()
        from transformers import Dinov2Config, Dinov2Model

        self.name, self.device = name, device
        if config is not None:
            model = Dinov2Model(Dinov2Config(**config))
        else:
            try:
                model = Dinov2Model.from_pretrained(repo)
            except Exception as exc:
                raise WeightsUnavailableError(
                    f"could not load {name!r} ({repo}) from the Hugging Face hub: "
                    f"{type(exc).__name__}: {exc}. Run once with network access (the weights are "
                    "cached), or set HF_HOME to a copy of the cache."
                ) from None
        self.model = model.eval().to(device)
        self.dim = int(model.config.hidden_size)
        self.transform = resize_crop_normalize(256, 224, IMAGENET_MEAN, IMAGENET_STD)

    def encode_batch(self, pixels: Any) -> Any:
        return self.model(pixel_values=pixels).pooler_output


@EMBEDDERS.register(
    "dinov2-vit-b-14", modality="image", dim=768, offline=False,
    description="DINOv2 ViT-B/14 (facebook/dinov2-base) CLS token; needs the HF hub",
)
def _dinov2_b(device: str = "cpu", config: dict | None = None) -> Dinov2:
    return Dinov2("dinov2-vit-b-14", "facebook/dinov2-base", device, config)


@EMBEDDERS.register(
    "dinov2-vit-l-14", modality="image", dim=1024, offline=False,
    description="DINOv2 ViT-L/14 (facebook/dinov2-large) CLS token; needs the HF hub",
)
def _dinov2_l(device: str = "cpu", config: dict | None = None) -> Dinov2:
    return Dinov2("dinov2-vit-l-14", "facebook/dinov2-large", device, config)
