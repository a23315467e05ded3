"""The official FoundationVision/VAR weight files into mindsight's modules.

- ``vae_ch160v4096z32.pth``: the tokenizer's ``torch.save``-d state dict (``encoder.*``,
  ``decoder.*``, ``quantize.embedding.weight`` 4096 × 32, ``quantize.quant_resi.qresi_ls.{0-3}``,
  ``quant_conv``, ``post_quant_conv``, the ``quantize.ema_vocab_hit_SV`` statistics buffer);
- ``var_d16.pth`` (or any depth): the class-conditional transformer's state dict. Its
  ``class_emb.weight`` (1001 × C, ImageNet classes + the null class) has no place in AVDE's
  model and is dropped; AVDE's condition map ``embed_proj`` is then newly initialised (both are
  listed in the :class:`LoadReport`). A stage-2 checkpoint that holds ``embed_proj`` loads whole.

Both are read through :func:`mindsight.io.tensors.read_torch` (never ``torch.load`` of
arbitrary pickles); ``.safetensors`` files with the same keys work too. A trainer checkpoint
that nests the model (``{"trainer": {"var_wo_ddp": ...}}`` as VAR's and AVDE's trainers write,
or ``{"state_dict"|"model": ...}``) is unwrapped. The files are published at
https://huggingface.co/FoundationVision/var.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.generate.var.tokenizer import MultiScaleVQVAE, TokenizerConfig
from mindsight.generate.var.transformer import VARConfig, VARTransformer

HUB_REPO = "FoundationVision/var"
TOKENIZER_FILE = "vae_ch160v4096z32.pth"
VAR_FILE = "var_d16.pth"

# buffers the modules compute from their config: never taken from a file (VAR's own loader
# likewise replaces ema_vocab_hit_SV when the number of scales differs)
_DERIVED = re.compile(r"(^|\.)(ema_vocab_hit_SV|lvl_1L|attn_bias_for_masking|zero_k_bias)$")
_CONDITION = ("embed_proj.weight", "embed_proj.bias")


@dataclass
class LoadReport:
    """What a load did: keys of the module the file lacked (left as initialised) and keys of the
    file the module does not use (dropped), with a sentence on each kind."""

    path: str = ""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = f"{self.path}: " if self.path else ""
        if not self.missing and not self.unexpected:
            return f"{head}every key loaded"
        parts = []
        if self.missing:
            parts.append(f"newly initialised: {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"dropped: {', '.join(self.unexpected)}")
        return head + "; ".join(parts + self.notes)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The flat ``{key: tensor}`` state dict in ``path`` (torch file or safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"VAR weight file {path} does not exist; download it from "
                               f"https://huggingface.co/{HUB_REPO} ({TOKENIZER_FILE}, {VAR_FILE})")
    if path.suffix == ".safetensors":
        from mindsight.train.checkpoint import load_tensors

        state: Any = load_tensors(path)[0]
    else:
        from mindsight.io.tensors import read_torch

        state = read_torch(path)
    for _ in range(2):  # unwrap trainer checkpoints
        if isinstance(state, dict) and isinstance(state.get("trainer"), dict):
            state = state["trainer"].get("var_wo_ddp", state["trainer"].get("vae_local", state))
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataFormatError(f"{path}: expected a state dict of tensors (a torch.save of "
                              f"model.state_dict()), found {type(state).__name__}")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _load(module: nn.Module, state: dict[str, torch.Tensor], path: Path, *, fix: str,
          allowed_missing: tuple[str, ...] = (), allowed_unexpected: tuple[str, ...] = (),
          strict: bool = True) -> LoadReport:
    """Copy ``state`` into ``module`` after checking every shape; derived buffers are skipped."""
    own = {k: v for k, v in module.state_dict().items() if not _DERIVED.search(k)}
    given = {k: v for k, v in state.items() if not _DERIVED.search(k)}
    for key, value in given.items():
        if key in own and tuple(value.shape) != tuple(own[key].shape):
            raise DataFormatError(f"{path}: key {key} has shape {tuple(value.shape)}, the config "
                                  f"expects {tuple(own[key].shape)}; {fix}")
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    if strict:
        bad_missing = [k for k in missing if k not in allowed_missing]
        bad_unexpected = [k for k in unexpected if k not in allowed_unexpected]
        if bad_missing or bad_unexpected:
            what = []
            if bad_missing:
                what.append(f"{len(bad_missing)} keys missing (e.g. {', '.join(bad_missing[:3])})")
            if bad_unexpected:
                what.append(f"{len(bad_unexpected)} unknown keys (e.g. {', '.join(bad_unexpected[:3])})")
            raise DataFormatError(f"{path}: does not fit the model: {'; '.join(what)}; {fix}")
    with torch.no_grad():
        for key in set(given) & set(own):
            own[key].copy_(given[key])
    return LoadReport(str(path), missing, unexpected)


def load_official_tokenizer(path: str | os.PathLike, cfg: TokenizerConfig | None = None, *,
                            strict: bool = True) -> tuple[MultiScaleVQVAE, LoadReport]:
    """The tokenizer from an official-format file (``vae_ch160v4096z32.pth``); ``cfg``: None for
    the official architecture. Refuses, in one line, a file of another kind or shape."""
    path = Path(path)
    cfg = cfg or TokenizerConfig()
    state = read_state_dict(path)
    if "quantize.embedding.weight" not in state:
        raise DataFormatError(f"{path}: not a VAR tokenizer state dict (no key "
                              f"quantize.embedding.weight; keys start {sorted(state)[:3]}); "
                              f"expected {TOKENIZER_FILE} from https://huggingface.co/{HUB_REPO}")
    vocab, zc = state["quantize.embedding.weight"].shape
    model = MultiScaleVQVAE(cfg)
    report = _load(model, state, path, strict=strict,
                   fix=f"the file's codebook is {vocab} × {zc}: pass the TokenizerConfig it was "
                       f"trained with (official: vocab 4096, z 32, ch 160)")
    return model.eval(), report


def infer_var_depth(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(depth, width) of the transformer whose state dict is ``state``."""
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    width = int(state["word_embed.weight"].shape[0]) if "word_embed.weight" in state else 0
    return len(blocks), width


def load_official_var(path: str | os.PathLike, cfg: VARConfig | None = None, *,
                      strict: bool = True) -> tuple[VARTransformer, LoadReport]:
    """The transformer from an official-format file (``var_d16.pth``, or a stage-2 checkpoint
    with the same keys plus ``embed_proj``). ``class_emb`` is dropped and ``embed_proj`` newly
    initialised when the file has none; both appear in the report."""
    path = Path(path)
    cfg = cfg or VARConfig()
    state = read_state_dict(path)
    if "head.weight" not in state or "word_embed.weight" not in state:
        raise DataFormatError(f"{path}: not a VAR transformer state dict (no keys head.weight, "
                              f"word_embed.weight; keys start {sorted(state)[:3]}); expected "
                              f"{VAR_FILE} from https://huggingface.co/{HUB_REPO}")
    depth, width = infer_var_depth(state)
    model = VARTransformer(cfg)
    report = _load(model, state, path, strict=strict, allowed_missing=_CONDITION,
                   allowed_unexpected=("class_emb.weight",),
                   fix=f"the file holds a depth-{depth}, width-{width} VAR: pass "
                       f"VARConfig(depth={depth}) (with the file's vocab_size and z_channels)")
    if "class_emb.weight" in report.unexpected:
        report.notes.append("VAR's class embedding is replaced by AVDE's embed_proj")
    if "embed_proj.weight" in report.missing:
        report.notes.append("embed_proj is untrained until AVDE's stage 2 trains it")
    return model.eval(), report


def condition_trained(report: LoadReport) -> bool:
    """Whether the load gave the transformer a trained condition map (``embed_proj``)."""
    return not any(k in report.missing for k in _CONDITION)
