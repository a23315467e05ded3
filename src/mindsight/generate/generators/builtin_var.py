"""``builtin-var``: the offline CPU next-scale-prediction generator for the simulator's stimuli.

A small VAR (Tian et al., 2024): a multi-scale VQ tokenizer (64 px ↔ 8 × 8 latent, token maps
1×1 … 8×8) and a transformer predicting each scale's tokens from the coarser ones, conditioned on
an EfficientNet-Lite0 image embedding through a linear condition map (AVDE's replacement of VAR's
class embedding). Trained from scratch by ``mindsight train-generator --kind var`` on concepts the
simulator never tests on; AVDE's stage 2 (:meth:`finetune`) re-fits it on brain embeddings.

img2img keeps the first ``round((1 − strength) · K)`` of the K scales of the initial image's
tokens and predicts the rest; the low-level pathway regresses the tokenizer's continuous latent
(decoded through quantisation, so blurry predictions come out as the tokenizer's pictures).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.generate.base import GENERATORS, Generator
from mindsight.generate.finetune import VarFinetuning
from mindsight.generate.var.img2img import TokenizerAutoencoder, as_pictures, keep_scales
from mindsight.generate.var.tokenizer import MultiScaleVQVAE, TokenizerConfig
from mindsight.generate.var.transformer import VARConfig, VARTransformer
from mindsight.output import logger
from mindsight.train.checkpoint import load_tensors


def shipped_var_weights() -> Path:
    """Where the packaged weights of ``builtin-var`` live."""
    return Path(str(resources.files("mindsight.generate") / "weights" / "builtin-var.safetensors"))


@GENERATORS.register("builtin-var",
                     description="small VAR (next-scale prediction) on EfficientNet-Lite0 embeddings, trained on OpenMoji stimuli (CPU); AVDE stage 2")
class BuiltinVarGenerator(VarFinetuning, Generator):
    """The offline VAR; ``load(weights=...)`` reads a file written by ``train-generator --kind var``."""

    name = "builtin-var"
    offline = True
    weights_option = "weights"
    finetunes = True
    default_guidance, default_top_k, default_top_p = 3.0, 200, 0.95

    def __init__(self, tokenizer: MultiScaleVQVAE, transformer: VARTransformer, embedding_model: str,
                 device: str = "cpu", record: dict[str, Any] | None = None) -> None:
        self.tokenizer, self.transformer = tokenizer.to(device).eval(), transformer.to(device).eval()
        self.embedding_model = embedding_model
        self.embedding_dim = transformer.cfg.cond_dim
        self.image_size = tokenizer.cfg.image_size
        self.autoencoder = TokenizerAutoencoder(self.tokenizer)
        self.device = device
        self.record = record or {}

    @classmethod
    def load(cls, device: str = "cpu", weights: str | Path | None = None) -> BuiltinVarGenerator:
        """The generator from ``weights`` (default: the packaged file)."""
        return load_builtin_var(weights, device)

    def modules(self) -> dict[str, nn.Module]:
        return {"tokenizer": self.tokenizer, "transformer": self.transformer}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "training": self.record, "finetuned": self.finetune_info}

    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor, *, init_images: torch.Tensor | None = None,
                 strength: float = 0.8, captions: Sequence[str] | None = None,
                 guidance_scale: float | None = None, steps: int | None = None,
                 seed: int = 0, batch_size: int = 64, top_k: int | None = None,
                 top_p: float | None = None) -> torch.Tensor:
        """Images for ``embeddings``; ``steps`` is unused (VAR takes one step per scale)."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_dim:
            raise DataFormatError(
                f"generator {self.name!r} is conditioned on {self.embedding_dim}-d {self.embedding_model} "
                f"embeddings; got shape {tuple(embeddings.shape)}")
        if init_images is not None and len(init_images) != len(embeddings):
            raise DataFormatError(f"{len(init_images)} initial images for {len(embeddings)} embeddings")
        if steps is not None:
            logger.info("%s: steps=%d ignored (VAR predicts one scale per step)", self.name, steps)
        n_scales = len(self.tokenizer.cfg.patch_nums)
        keep = keep_scales(strength, n_scales) if init_images is not None else 0
        out = []
        for b, start in enumerate(range(0, len(embeddings), batch_size)):
            cond = embeddings[start : start + batch_size].float().to(self.device)
            prefix = None
            if keep:
                init = as_pictures(init_images[start : start + batch_size], self.image_size).to(self.device)
                prefix = self.tokenizer.encode_tokens(init)[:keep]
            if keep == n_scales:  # strength 0: the initial image's own tokens, decoded
                out.append(self.tokenizer.decode_tokens(prefix).cpu())
                continue
            tokens = self.transformer.generate(
                cond, self.tokenizer, guidance_scale=self.default_guidance if guidance_scale is None else guidance_scale,
                top_k=self.default_top_k if top_k is None else top_k,
                top_p=self.default_top_p if top_p is None else top_p, seed=seed + b, prefix=prefix)
            out.append(self.tokenizer.decode_tokens(tokens).cpu())
        return torch.cat(out)


def load_builtin_var(weights: str | Path | None = None, device: str = "cpu") -> BuiltinVarGenerator:
    """``builtin-var`` from ``weights`` (default: the packaged file)."""
    path = Path(weights) if weights is not None else shipped_var_weights()
    if not path.is_file():
        raise MissingFileError(
            f"builtin-var weights {path} are missing; train them with "
            "`mindsight train-generator --kind var` (add --install to make them the default)")
    try:
        tensors, meta = load_tensors(path)
    except Exception as err:  # not a safetensors file at all
        raise DataFormatError(f"{path}: not a readable builtin-var weight file ({err})") from err
    if "tokenizer" not in meta or "transformer" not in meta:
        raise DataFormatError(f"{path}: not a builtin-var weight file (no 'tokenizer'/'transformer' metadata; "
                              "write one with `mindsight train-generator --kind var`)")
    tokenizer = MultiScaleVQVAE(TokenizerConfig.from_dict(meta["tokenizer"]))
    transformer = VARTransformer(VARConfig.from_dict(meta["transformer"]))
    for prefix, module in (("tokenizer.", tokenizer), ("transformer.", transformer)):
        part = {k[len(prefix):]: v.float() if v.is_floating_point() else v
                for k, v in tensors.items() if k.startswith(prefix)}
        try:
            missing, unexpected = module.load_state_dict(part, strict=False)
        except RuntimeError as err:  # a tensor of the wrong shape
            raise DataFormatError(f"{path}: weights do not fit the architecture in its metadata "
                                  f"({str(err).splitlines()[-1].strip()})") from err
        if missing or unexpected:
            raise DataFormatError(f"{path}: weights do not fit the architecture (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})")
    return BuiltinVarGenerator(tokenizer, transformer, meta.get("embedding_model", "efficientnet-lite0"),
                               device=device, record=meta.get("record"))
