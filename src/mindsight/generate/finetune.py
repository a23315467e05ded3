"""AVDE's stage 2: fine-tune a VAR generator on (frozen brain embedding, image tokens) pairs.

AVDE (arXiv 2602.22555, code ddicee/avde) replaces VAR's class embedding by a linear map of the
frozen EEG embedding and trains the VAR transformer with its usual next-scale cross-entropy
(condition dropped 10 % of the time for classifier-free guidance) on the training trials' pictures.
Here the same, with mindsight's protocol: the run's *validation concepts* (held-out training
concepts, the split the prior uses) select the kept weights and stop training early; AVDE
validates on its test split.

What is trained is an option (:attr:`FinetuneConfig.train`): ``"all"`` (the whole transformer,
as AVDE; the tokenizer stays frozen) or ``"condition"`` (only the parameters of the condition map
and the null condition, found as those that :meth:`VARTransformer.condition` depends on).

:class:`VarFinetuning` gives any generator that holds ``.tokenizer`` and ``.transformer``
(``builtin-var``, ``var-d16``) the :class:`~mindsight.generate.base.Generator` fine-tuning methods.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mindsight.errors import ConfigError, DataFormatError
from mindsight.output import progress_bar

if TYPE_CHECKING:
    from mindsight.generate.var.tokenizer import MultiScaleVQVAE
    from mindsight.generate.var.transformer import VARTransformer

TRAINED_PARTS = ("all", "condition")


@dataclass
class FinetuneConfig:
    """What stage 2 trains and how (recorded in ``reconstruction.json``)."""

    train: str = "all"  # "all": the transformer, as AVDE; "condition": the condition map only
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-4  # AVDE: 2e-5 · 128 / 256 for the 310 M-parameter VAR-d16
    weight_decay: float = 0.05  # AVDE's
    cond_drop: float = 0.1  # AVDE's
    grad_clip: float = 2.0  # AVDE's
    patience: int = 5  # epochs without a better validation loss before stopping
    match_statistics: bool = True  # reconstruct: brain embeddings given the image embeddings' mean/std first

    def __post_init__(self) -> None:
        if self.train not in TRAINED_PARTS:
            raise ConfigError(f"finetune train = {self.train!r}; choose one of {', '.join(TRAINED_PARTS)}")
        if min(self.epochs, self.batch_size, self.patience) < 1 or self.lr <= 0:
            raise ConfigError("finetune epochs, batch_size and patience must be ≥ 1 and lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_tokens(tokenizer: MultiScaleVQVAE, images: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """Every scale's tokens of ``images`` ((n, 3, h, w), float in [0, 1] or uint8, any size:
    resized to the tokenizer's), one (n, pn²) LongTensor per scale, on the CPU."""
    from mindsight.generate.generators.builtin import resize

    tokenizer.eval()
    device = next(tokenizer.parameters()).device
    size = tokenizer.cfg.image_size
    out: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            out.append([t.cpu() for t in tokenizer.encode_tokens(resize(x, size))])
    return [torch.cat(scale) for scale in zip(*out, strict=True)]


def condition_parameter_names(transformer: VARTransformer) -> list[str]:
    """Names of the parameters that :meth:`VARTransformer.condition` depends on (the condition
    map and the null condition): those that receive a gradient from its output."""
    named = [(n, p) for n, p in transformer.named_parameters()]
    probe = torch.randn(2, transformer.cfg.cond_dim, device=named[0][1].device)
    with torch.enable_grad():
        out = transformer.condition(probe, torch.tensor([False, True], device=probe.device))
        grads = torch.autograd.grad(out.sum(), [p for _, p in named], allow_unused=True)
    return [n for (n, _), g in zip(named, grads, strict=True) if g is not None]


def _batched_loss(transformer: VARTransformer, tokenizer: MultiScaleVQVAE, cond: torch.Tensor,
                  tokens: list[torch.Tensor], batch_size: int) -> float:
    """Mean cross-entropy over all pairs, never dropping the condition."""
    device = cond.device
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(cond), batch_size):
            sl = slice(start, start + batch_size)
            loss = transformer.loss(cond[sl], [t[sl].to(device) for t in tokens], tokenizer, drop_prob=0.0)
            total += float(loss) * len(cond[sl])
    return total / max(1, len(cond))


def finetune_var(transformer: VARTransformer, tokenizer: MultiScaleVQVAE, train_cond: torch.Tensor,
                 train_images: torch.Tensor, val_cond: torch.Tensor, val_images: torch.Tensor,
                 config: FinetuneConfig | None = None, *, seed: int = 0) -> tuple[dict[str, Any], list[str]]:
    """Fine-tune ``transformer`` in place (see the module docstring); keep the epoch with the
    lowest validation cross-entropy. Returns (record, names of the trained parameters)."""
    cfg = config or FinetuneConfig()
    dim = transformer.cfg.cond_dim
    for what, cond, imgs in (("training", train_cond, train_images), ("validation", val_cond, val_images)):
        if cond.dim() != 2 or cond.shape[1] != dim:
            raise DataFormatError(f"fine-tuning takes {dim}-d conditions (the generator's condition map); "
                                  f"the {what} conditions are {tuple(cond.shape)}")
        if len(cond) != len(imgs) or len(cond) == 0:
            raise DataFormatError(f"fine-tuning: {len(cond)} {what} conditions for {len(imgs)} images")
    device = next(transformer.parameters()).device
    train_tok, val_tok = image_tokens(tokenizer, train_images), image_tokens(tokenizer, val_images)
    train_cond, val_cond = train_cond.float().to(device), val_cond.float().to(device)
    names = (condition_parameter_names(transformer) if cfg.train == "condition"
             else [n for n, _ in transformer.named_parameters()])
    chosen = set(names)
    params = dict(transformer.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    for n, p in params.items():
        p.requires_grad_(n in chosen)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW([params[n] for n in names], lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    transformer.eval()
    before = _batched_loss(transformer, tokenizer, val_cond, val_tok, cfg.batch_size)
    best, best_state, best_epoch, stale = before, _copy(transformer, names), -1, 0
    history: list[dict[str, float]] = []
    try:
        bar = progress_bar(range(cfg.epochs), desc="fine-tuning on brain embeddings", unit="epoch")
        for epoch in bar:
            transformer.train()
            order = torch.randperm(len(train_cond))
            losses = []
            for start in range(0, len(order), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                loss = transformer.loss(train_cond[idx.to(device)], [t[idx].to(device) for t in train_tok],
                                        tokenizer, drop_prob=cfg.cond_drop)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([params[n] for n in names], cfg.grad_clip)
                opt.step()
                losses.append(loss.item())
            sched.step()
            transformer.eval()
            val = _batched_loss(transformer, tokenizer, val_cond, val_tok, cfg.batch_size)
            history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_loss": val})
            bar.set_postfix(loss=f"{np.mean(losses):.3f}", val=f"{val:.3f}")
            if val < best:
                best, best_state, best_epoch, stale = val, _copy(transformer, names), epoch, 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
    finally:
        for n, p in params.items():
            p.requires_grad_(flags[n])
    transformer.load_state_dict(best_state, strict=False)
    transformer.eval()
    info = {"trained": cfg.train, "parameters_trained": int(sum(params[n].numel() for n in names)),
            "val_loss_before": before, "val_loss": best, "best_epoch": best_epoch,
            "epochs_run": len(history), "n_train": len(train_cond), "n_val": len(val_cond), "history": history,
            "selection": "lowest validation cross-entropy on the run's validation concepts "
                         "(best_epoch -1: the generator before fine-tuning)"}
    return info, names


def _copy(module: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    state = module.state_dict()
    return {n: copy.deepcopy(state[n]) for n in names}


class VarFinetuning:
    """The fine-tuning methods of a VAR generator (one with ``.tokenizer`` and ``.transformer``)."""

    tokenizer: MultiScaleVQVAE
    transformer: VARTransformer
    finetune_info: dict[str, Any] | None = None
    _finetuned_names: list[str] | None = None

    def finetune(self, train_cond: torch.Tensor, train_images: torch.Tensor, val_cond: torch.Tensor,
                 val_images: torch.Tensor, *, config: FinetuneConfig | None = None,
                 seed: int = 0) -> dict[str, Any]:
        """AVDE's stage 2 on these pairs (see :meth:`mindsight.generate.base.Generator.finetune`)."""
        info, names = finetune_var(self.transformer, self.tokenizer, train_cond, train_images, val_cond,
                                   val_images, config, seed=seed)
        self.finetune_info, self._finetuned_names = info, names
        return info

    def finetuned_state(self) -> dict[str, torch.Tensor]:
        if self._finetuned_names is None:
            raise DataFormatError("this generator has not been fine-tuned; call finetune() first")
        state = self.transformer.state_dict()
        return {f"transformer.{n}": state[n].detach().cpu() for n in self._finetuned_names}

    def load_finetuned_state(self, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        part = {k[len("transformer."):]: v for k, v in tensors.items() if k.startswith("transformer.")}
        if len(part) != len(tensors):
            raise DataFormatError(f"fine-tuned state has tensors outside the transformer: "
                                  f"{sorted(set(tensors) - {f'transformer.{k}' for k in part})[:3]}")
        unexpected = self.transformer.load_state_dict(part, strict=False).unexpected_keys
        if unexpected:
            raise DataFormatError(f"fine-tuned state does not fit this generator (unexpected {unexpected[:3]})")
        self.finetune_info, self._finetuned_names = info, list(part)
