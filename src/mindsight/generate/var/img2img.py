"""What every VAR generator (``builtin-var``, ``var-d16``) offers the reconstruction pipeline
besides sampling: the tokenizer's continuous latent as the low-level pathway's target, and how
many of an initial image's token scales img2img keeps."""

from __future__ import annotations

import torch

from mindsight.errors import DataFormatError
from mindsight.evaluate.reconstruction import resize_square
from mindsight.generate.base import Autoencoder
from mindsight.generate.var.tokenizer import MultiScaleVQVAE


def as_pictures(images: torch.Tensor, size: int) -> torch.Tensor:
    """(n, 3, h, w) → float (n, 3, size, size) in [0, 1] (antialiased resize when needed)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataFormatError(f"images must be (n, 3, height, width), got {tuple(images.shape)}")
    images = images.float()
    if images.shape[-2:] != (size, size):
        images = resize_square(images, size)
    return images.clamp(0, 1)


def keep_scales(strength: float, n_scales: int) -> int:
    """How many of the initial image's scales img2img keeps: round((1 − strength) · K)."""
    if not 0.0 <= strength <= 1.0:
        raise DataFormatError(f"img2img strength must be in [0, 1], got {strength}")
    return round((1.0 - strength) * n_scales)


class TokenizerAutoencoder(Autoencoder):
    """The tokenizer's continuous latent (before quantisation) as the low-level target space;
    ``decode`` quantises it over all scales first, as every VAR image is decoded, so blurry
    predictions come out as the tokenizer's pictures."""

    def __init__(self, tokenizer: MultiScaleVQVAE) -> None:
        self.tokenizer = tokenizer
        cfg = tokenizer.cfg
        self.image_size = cfg.image_size
        self.latent_shape = (cfg.z_channels, cfg.latent_size, cfg.latent_size)

    def _device(self) -> torch.device:
        return self.tokenizer.quant_conv.weight.device

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = as_pictures(images, self.image_size).to(self._device())
        return self.tokenizer.encode_latent(x).to(images.device)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if tuple(latents.shape[1:]) != self.latent_shape:
            raise DataFormatError(f"expected latents (n, {', '.join(map(str, self.latent_shape))}),"
                                  f" got {tuple(latents.shape)}")
        f = latents.to(self._device(), torch.float32)
        return self.tokenizer.decode_latent(self.tokenizer.quantize_latent(f)).to(latents.device)
