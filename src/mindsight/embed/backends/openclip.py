"""CLIP image and text embeddings through open_clip: the anchors' targets.

``clip-vit-h-14``  LAION ViT-H-14 (laion2b_s32b_b79k), 1024-d: ATM's features.
``clip-vit-l-14``  OpenAI ViT-L/14 (QuickGELU), 768-d: NICE's features (same weights as
                   transformers' ``openai/clip-vit-large-patch14`` image_embeds).
``clip-rn50``      OpenAI RN50, 1024-d: UBP's and the multi-level blur paper's default.

``config=`` (an open_clip model config dict) builds the architecture with random weights through
the same code path; it is how the tests exercise this backend offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mindsight._torch_compat import ensure_torchvision
from mindsight.embed.base import EMBEDDERS, ImageEmbedder, TextEmbedder
from mindsight.errors import WeightsUnavailableError


class OpenClip(ImageEmbedder, TextEmbedder):
    batch_size = 64

    def __init__(
        self, name: str, arch: str, pretrained: str | None, device: str = "cpu",
        config: dict | None = None, quick_gelu: bool = False,
    ) -> None:
        ensure_torchvision()
        import open_clip

        self.name, self.device = name, device
        if config is not None:  # random weights from a (small) architecture config
            arch = f"mindsight-{name}-custom"
            open_clip.factory._MODEL_CONFIGS[arch] = dict(config)
            pretrained = None
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=device, force_quick_gelu=quick_gelu,
            )
        except Exception as exc:  # hub/network/cache errors come in many types
            raise WeightsUnavailableError(
                f"could not load {name!r} (open_clip {arch}, pretrained={pretrained!r}): "
                f"{type(exc).__name__}: {exc}. The weights come from the Hugging Face hub: run once "
                "with network access (they are cached), or import precomputed features with "
                "`mindsight import-features`."
            ) from None
        self.model = model.eval()
        self.transform = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.dim = int(open_clip.get_model_config(arch)["embed_dim"])

    def encode_batch(self, pixels: Any) -> Any:
        return self.model.encode_image(pixels)

    def embed_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        import torch

        bs = batch_size or 256
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), bs):
                tokens = self.tokenizer(list(texts[i : i + bs])).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


@EMBEDDERS.register(
    "clip-vit-h-14", modality="image+text", dim=1024, offline=False,
    description="OpenCLIP ViT-H-14 laion2b_s32b_b79k (ATM's target space); needs the HF hub",
)
def _vith14(device: str = "cpu", config: dict | None = None) -> OpenClip:
    return OpenClip("clip-vit-h-14", "ViT-H-14", "laion2b_s32b_b79k", device, config)


@EMBEDDERS.register(
    "clip-vit-l-14", modality="image+text", dim=768, offline=False,
    description="OpenAI CLIP ViT-L/14 (NICE's target space); needs the HF hub",
)
def _vitl14(device: str = "cpu", config: dict | None = None) -> OpenClip:
    return OpenClip("clip-vit-l-14", "ViT-L-14", "openai", device, config, quick_gelu=True)


@EMBEDDERS.register(
    "clip-rn50", modality="image+text", dim=1024, offline=False,
    description="OpenAI CLIP RN50 (UBP's and multi-level blur's target space); needs the HF hub",
)
def _rn50(device: str = "cpu", config: dict | None = None) -> OpenClip:
    return OpenClip("clip-rn50", "RN50", "openai", device, config, quick_gelu=True)
