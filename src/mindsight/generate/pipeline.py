"""The two-stage reconstruction pipeline: composes separately testable parts, as diffusers does.

brain embedding ──► prior (stage I) ──► image embedding ──┐
brain epochs ─────► low-level decoder ──► latent ──► blurry image ──► generator (stage II) ──► image

Each part is optional except the generator: without a prior the brain embedding conditions the
generator directly; without a low-level decoder generation starts from noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mindsight.errors import DataFormatError
from mindsight.generate.base import Generator
from mindsight.generate.lowlevel import LowLevelDecoder
from mindsight.generate.prior import DiffusionPrior


@dataclass
class Reconstruction:
    images: torch.Tensor  # (n, 3, H, W) in [0, 1]
    embeddings: torch.Tensor  # the image embeddings that conditioned the generator
    blurry: torch.Tensor | None  # the low-level images, when there is a low-level decoder


class ReconstructionPipeline:
    """``pipe(brain_embeddings, epochs)`` → :class:`Reconstruction`."""

    def __init__(self, generator: Generator, prior: DiffusionPrior | None = None,
                 lowlevel: LowLevelDecoder | None = None, *, strength: float = 0.8,
                 guidance_scale: float | None = None, steps: int | None = None,
                 prior_steps: int | None = None, prior_guidance: float | None = None,
                 postprocess: bool = False) -> None:
        if prior is not None and prior.dim != generator.embedding_dim:
            raise DataFormatError(f"the prior samples {prior.dim}-d embeddings but generator "
                                  f"{generator.name!r} takes {generator.embedding_dim}-d ones")
        if lowlevel is not None and tuple(lowlevel.latent_shape) != tuple(generator.autoencoder.latent_shape):
            raise DataFormatError(f"the low-level decoder predicts {lowlevel.latent_shape} latents but generator "
                                  f"{generator.name!r} uses {generator.autoencoder.latent_shape}")
        self.generator, self.prior, self.lowlevel = generator, prior, lowlevel
        self.strength, self.guidance_scale, self.steps = strength, guidance_scale, steps
        self.prior_steps, self.prior_guidance, self.postprocess = prior_steps, prior_guidance, postprocess

    def image_embeddings(self, brain_embeddings: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Stage I: brain → image embeddings (the brain embeddings themselves without a prior)."""
        if self.prior is None:
            return brain_embeddings.float()
        return self.prior.sample(brain_embeddings, steps=self.prior_steps,
                                 guidance_scale=self.prior_guidance, seed=seed)

    def blurry_images(self, epochs: torch.Tensor) -> torch.Tensor:
        """Low-level pathway: epochs → predicted latents → decoded images."""
        if self.lowlevel is None:
            raise DataFormatError("this pipeline has no low-level decoder")
        latents = self.lowlevel.predict(epochs, postprocess=self.postprocess)
        return self.generator.autoencoder.decode(latents).cpu()

    def __call__(self, brain_embeddings: torch.Tensor, epochs: torch.Tensor | None = None, *,
                 captions: Sequence[str] | None = None, seed: int = 0) -> Reconstruction:
        emb = self.image_embeddings(brain_embeddings, seed)
        blurry = None
        if self.lowlevel is not None:
            if epochs is None:
                raise DataFormatError("the low-level pathway needs the brain epochs as well as their embeddings")
            blurry = self.blurry_images(epochs)
        images = self.generator.generate(emb, init_images=blurry, strength=self.strength if blurry is not None else 1.0,
                                         captions=captions, guidance_scale=self.guidance_scale,
                                         steps=self.steps, seed=seed)
        return Reconstruction(images=images, embeddings=emb, blurry=blurry)
