"""``var-d16``: VAR-d16 conditioned on 1024-d CLIP image embeddings, as AVDE (256 px).

The transformer is VAR-d16 (FoundationVision/VAR, 310 M parameters) with its ImageNet class
embedding replaced by AVDE's ``embed_proj`` = Linear(1024 → 1024) of the (brain-predicted)
OpenCLIP ViT-H-14 image embedding; the tokenizer is VAR's multi-scale VQ-VAE
(``vae_ch160v4096z32.pth``). See :mod:`mindsight.generate.var`.

Weights (``var_weights``, the ``--weights`` option):

- a folder holding ``var_d16.pth`` and ``vae_ch160v4096z32.pth``;
- a file: the transformer (official ``var_d16.pth``, or a stage-2 checkpoint with the same keys
  plus ``embed_proj``), the tokenizer then from ``tokenizer_weights`` or beside it;
- a Hugging Face hub repo id (default ``FoundationVision/var``): both files are downloaded.

With the official ``var_d16.pth`` the condition map is untrained: the images then ignore the
embeddings until AVDE's stage 2 trains it (a warning says so on every ``generate``).

``generate``: classifier-free guidance with VAR's ramp over scales (default 4), top-k 900,
top-p 0.95; ``steps`` is ignored (VAR's number of steps is its number of scales); captions are
ignored. img2img keeps the first ``round((1 − strength) · K)`` of the K token scales of the
initial image and samples the rest. Each batch is seeded by ``seed`` + its first index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mindsight.errors import ConfigError, DataFormatError, MissingFileError, WeightsUnavailableError
from mindsight.generate.base import GENERATORS, Generator
from mindsight.generate.finetune import VarFinetuning
from mindsight.generate.var.img2img import TokenizerAutoencoder, as_pictures, keep_scales
from mindsight.generate.var.official import (
    HUB_REPO,
    TOKENIZER_FILE,
    VAR_FILE,
    LoadReport,
    condition_trained,
    load_official_tokenizer,
    load_official_var,
)
from mindsight.generate.var.tokenizer import MultiScaleVQVAE, TokenizerConfig
from mindsight.generate.var.transformer import VARConfig, VARTransformer
from mindsight.output import logger


def _resolve(var_weights: str | Path, tokenizer_weights: str | Path | None) -> tuple[Path, Path]:
    """(transformer file, tokenizer file) from a folder, a file or a hub repo id."""
    source = Path(var_weights)
    if source.is_dir():
        var_file = source / VAR_FILE
        tok_file = Path(tokenizer_weights) if tokenizer_weights else source / TOKENIZER_FILE
    elif source.is_file():
        var_file = source
        tok_file = Path(tokenizer_weights) if tokenizer_weights else source.parent / TOKENIZER_FILE
    elif str(var_weights).count("/") == 1 and not str(var_weights).startswith((".", "/", "~")):
        var_file = _download(str(var_weights), VAR_FILE)
        tok_file = Path(tokenizer_weights) if tokenizer_weights else _download(str(var_weights), TOKENIZER_FILE)
    else:
        raise MissingFileError(f"var-d16 weights {var_weights} are neither a file, a folder nor a "
                               f"hub repo id; give a folder holding {VAR_FILE} and "
                               f"{TOKENIZER_FILE} (--weights /path/to/folder)")
    for f in (var_file, tok_file):
        if not f.is_file():
            raise MissingFileError(f"var-d16 needs {f}; download it from "
                                   f"https://huggingface.co/{HUB_REPO}/resolve/main/{f.name}")
    return var_file, tok_file


def _download(repo: str, filename: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, filename))
    except Exception as exc:
        raise WeightsUnavailableError(
            f"var-d16 could not download {filename} from the hub repo {repo!r}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; download "
            f"https://huggingface.co/{HUB_REPO}/resolve/main/{filename} and pass its folder "
            f"(--weights /path/to/folder)") from None


@GENERATORS.register(
    "var-d16",
    description="VAR-d16 next-scale prediction conditioned on 1024-d CLIP ViT-H-14 embeddings "
                "through AVDE's Linear map (256 px); official FoundationVision/var weights",
)
class VarD16(VarFinetuning, Generator):
    """VAR-d16 + VAR's tokenizer, conditioned as AVDE: see the module docstring."""

    name = "var-d16"
    offline = False  # the official weights come from the Hugging Face hub unless given locally
    weights_option = "var_weights"
    finetunes = True  # AVDE's stage 2 trains embed_proj (and the transformer) on brain embeddings

    def __init__(self, tokenizer: MultiScaleVQVAE, var: VARTransformer, *, device: str = "cpu",
                 embedding_model: str = "clip-vit-h-14", guidance_scale: float = 4.0,
                 top_k: int = 900, top_p: float = 0.95, batch_size: int = 16,
                 reports: dict[str, LoadReport] | None = None) -> None:
        if tokenizer.cfg.patch_nums != var.cfg.patch_nums or \
                tokenizer.cfg.vocab_size != var.cfg.vocab_size or \
                tokenizer.cfg.z_channels != var.cfg.z_channels:
            raise ConfigError("var-d16: the tokenizer and the transformer disagree on patch_nums, "
                              "vocab_size or z_channels; load both with matching configs")
        self.device = str(device)
        self.tokenizer = tokenizer.to(self.device).eval()
        self.transformer = var.to(self.device).eval()
        self.embedding_model = embedding_model
        self.embedding_dim = var.cfg.cond_dim
        self.image_size = tokenizer.cfg.image_size
        self.autoencoder = TokenizerAutoencoder(self.tokenizer)
        self.guidance_scale, self.top_k, self.top_p = float(guidance_scale), int(top_k), float(top_p)
        self.batch_size = int(batch_size)
        self.reports = reports or {}
        self._loaded_trained = condition_trained(self.reports["var"]) if "var" in self.reports else True

    @classmethod
    def load(cls, device: str = "cpu", var_weights: str | Path = HUB_REPO,
             tokenizer_weights: str | Path | None = None, embedding_model: str = "clip-vit-h-14",
             tokenizer_config: dict[str, Any] | None = None, var_config: dict[str, Any] | None = None,
             guidance_scale: float = 4.0, top_k: int = 900, top_p: float = 0.95,
             batch_size: int = 16) -> VarD16:
        """``tokenizer_config`` / ``var_config``: overrides of the official architecture (tests
        use tiny ones); the rest as the module docstring says."""
        var_file, tok_file = _resolve(var_weights, tokenizer_weights)
        tok_cfg = TokenizerConfig.from_dict({**TokenizerConfig().to_dict(), **(tokenizer_config or {})})
        var_cfg = VARConfig.from_dict({**VARConfig().to_dict(), **(var_config or {})})
        tokenizer, tok_report = load_official_tokenizer(tok_file, tok_cfg)
        var, var_report = load_official_var(var_file, var_cfg)
        for report in (tok_report, var_report):
            logger.info("var-d16 weights: %s", report.summary())
        return cls(tokenizer, var, device=device, embedding_model=embedding_model,
                   guidance_scale=guidance_scale, top_k=top_k, top_p=top_p,
                   batch_size=batch_size, reports={"tokenizer": tok_report, "var": var_report})

    @property
    def condition_trained(self) -> bool:
        """Whether embed_proj holds trained weights: from the file, or from stage 2."""
        return self._loaded_trained or self.finetune_info is not None

    def modules(self) -> dict[str, nn.Module]:
        return {"tokenizer": self.tokenizer, "transformer": self.transformer}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "condition_trained": self.condition_trained,
                "weights": {k: r.summary() for k, r in self.reports.items()}}

    def img2img_scales(self, strength: float) -> int:
        """How many token scales of the initial image img2img keeps."""
        return keep_scales(strength, len(self.tokenizer.cfg.patch_nums))

    @torch.no_grad()
    def generate(self, embeddings: torch.Tensor, *, init_images: torch.Tensor | None = None,
                 strength: float = 0.8, captions: Sequence[str] | None = None,
                 guidance_scale: float | None = None, steps: int | None = None,
                 seed: int = 0) -> torch.Tensor:
        """See ``Generator.generate`` and the module docstring; images as float32 on the CPU."""
        emb = torch.as_tensor(embeddings).float()
        if emb.ndim != 2 or emb.shape[1] != self.embedding_dim:
            raise DataFormatError(f"var-d16 is conditioned on (n, {self.embedding_dim}) "
                                  f"{self.embedding_model} embeddings, got {tuple(emb.shape)}")
        if not self.condition_trained:
            logger.warning("var-d16: the condition map embed_proj is untrained (the official "
                           "var_d16.pth is class-conditional); images ignore the embeddings "
                           "until AVDE's stage 2 trains it")
        n = emb.shape[0]
        init = None
        if init_images is not None:
            if len(init_images) != n:
                raise DataFormatError(f"{len(init_images)} initial images for {n} embeddings")
            init = as_pictures(init_images.cpu(), self.image_size)
            if strength <= 0:
                return init
        keep = self.img2img_scales(strength) if init is not None else 0
        guidance = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        out = []
        for start in range(0, n, self.batch_size):
            cond = emb[start : start + self.batch_size].to(self.device)
            prefix = None
            if keep:
                tokens = self.tokenizer.encode_tokens(init[start : start + self.batch_size].to(self.device))
                prefix = tokens[:keep]
            tokens = self.transformer.generate(cond, self.tokenizer, guidance_scale=guidance,
                                       top_k=self.top_k, top_p=self.top_p, seed=seed + start,
                                       prefix=prefix)
            out.append(self.tokenizer.decode_tokens(tokens).float().cpu())
        return torch.cat(out)
