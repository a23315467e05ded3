"""``builtin``: the offline CPU generator for the simulator's stimulus domain (OpenMoji pictures).

A small latent diffusion model conditioned on EfficientNet-Lite0 image embeddings (the offline
default embedding space), trained from scratch by ``mindsight train-generator`` on concepts the
simulator never uses for testing. Its float16 weights ship with the package.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.evaluate.reconstruction import resize_square
from mindsight.generate.base import GENERATORS, Autoencoder, Generator
from mindsight.generate.networks import BuiltinConfig, ConvAutoencoder, LatentUNet
from mindsight.generate.schedule import CosineSchedule
from mindsight.train.checkpoint import load_tensors


def shipped_weights() -> Path:
    """Where the packaged weights of the built-in generator live."""
    return Path(str(resources.files("mindsight.generate") / "weights" / "builtin.safetensors"))


class _ConvAE(Autoencoder):
    def __init__(self, net: ConvAutoencoder, cfg: BuiltinConfig) -> None:
        self.net = net
        self.image_size = cfg.image_size
        self.latent_shape = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)

    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = resize(images.to(self._device()), self.image_size)
        return self.net.encode(images)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.net.decode(latents.to(self._device()))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(n, 3, h, w) → (n, 3, size, size), antialiased bilinear; a no-op at the right size."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise DataFormatError(f"images must be (n, 3, height, width), got {tuple(images.shape)}")
    if images.shape[-2:] == (size, size):
        return images
    return resize_square(images.float(), size).clamp(0, 1)


@GENERATORS.register("builtin",
                     description="small latent diffusion on EfficientNet-Lite0 embeddings, trained on OpenMoji stimuli (ships, CPU)")
class BuiltinGenerator(Generator):
    """The offline latent diffusion model; ``load(weights=...)`` reads a weight file."""

    name = "builtin"
    offline = True
    weights_option = "weights"  # a .safetensors file written by `mindsight train-generator`
    finetunes = False  # conditions on image embeddings only (no AVDE stage 2)

    def __init__(self, cfg: BuiltinConfig, ae: ConvAutoencoder, unet: LatentUNet,
                 device: str = "cpu", record: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.embedding_model = cfg.embedding_model
        self.embedding_dim = cfg.embedding_dim
        self.image_size = cfg.image_size
        self.ae_net, self.unet = ae.to(device).eval(), unet.to(device).eval()
        self.autoencoder = _ConvAE(self.ae_net, cfg)
        self.schedule = CosineSchedule()
        self.device = device
        self.record = record or {}
        self.default_steps, self.default_guidance = 25, 3.0

    @classmethod
    def load(cls, device: str = "cpu", weights: str | Path | None = None) -> BuiltinGenerator:
        """The generator from ``weights`` (default: the packaged file)."""
        return load_builtin(weights, device)

    def modules(self) -> dict[str, nn.Module]:
        return {"autoencoder": self.ae_net, "unet": self.unet}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "training": self.record}

    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor, *, init_images: torch.Tensor | None = None,
                 strength: float = 0.8, captions: Sequence[str] | None = None,
                 guidance_scale: float | None = None, steps: int | None = None,
                 seed: int = 0, batch_size: int = 64) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_dim:
            raise DataFormatError(
                f"the builtin generator is conditioned on {self.embedding_dim}-d {self.embedding_model} "
                f"embeddings; got shape {tuple(embeddings.shape)}")
        if init_images is not None and len(init_images) != len(embeddings):
            raise DataFormatError(f"{len(init_images)} initial images for {len(embeddings)} embeddings")
        g = torch.Generator().manual_seed(seed)
        out = []
        shape = self.autoencoder.latent_shape
        for start in range(0, len(embeddings), batch_size):
            cond = embeddings[start : start + batch_size].float().to(self.device)
            init = None
            if init_images is not None:
                init = self.autoencoder.encode(init_images[start : start + batch_size])
            z = self.schedule.sample(self.unet, cond, (len(cond), *shape),
                                     steps=steps or self.default_steps,
                                     guidance_scale=self.default_guidance if guidance_scale is None else guidance_scale,
                                     init=init, strength=strength, generator=g)
            out.append(self.autoencoder.decode(z).cpu())
        return torch.cat(out)


def load_builtin(weights: str | Path | None = None, device: str = "cpu") -> BuiltinGenerator:
    """The built-in generator from ``weights`` (default: the packaged file)."""
    path = Path(weights) if weights is not None else shipped_weights()
    if not path.is_file():
        raise MissingFileError(
            f"built-in generator weights {path} are missing; retrain them with "
            "`mindsight train-generator` (or reinstall mindsight, which ships them)")
    tensors, meta = load_tensors(path)
    if "model" not in meta:
        raise DataFormatError(f"{path}: not a built-in generator weight file (no 'model' metadata)")
    cfg = BuiltinConfig.from_dict(meta["model"])
    ae, unet = ConvAutoencoder(cfg), LatentUNet(cfg)
    for prefix, module in (("ae.", ae), ("unet.", unet)):
        part = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(part, strict=False)
        if missing or unexpected:
            raise DataFormatError(f"{path}: weights do not fit the architecture (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})")
    return BuiltinGenerator(cfg, ae, unet, device=device, record=meta.get("record"))

