"""The training loop: minibatch descent, validation every epoch, selection, resumable state.

The selected model is the one with the best validation score (loss or top-1 on the validation
split of *training* concepts); training stops early after ``patience`` epochs without
improvement. Given a seed the loop is deterministic on CPU, and a run interrupted at any point
resumes from its last completed epoch to the same result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mindsight.config import TrainConfig
from mindsight.encoders.base import param_groups_with_rest
from mindsight.errors import ConfigError, DataFormatError
from mindsight.output import progress_bar
from mindsight.train.checkpoint import (
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_state,
    save_tensors,
    set_rng_state,
)
from mindsight.train.data import TrialTensors
from mindsight.train.distributed import World, shard, wrap
from mindsight.train.model import AlignmentModel
from mindsight.train.precision import autocast_context


@dataclass
class Targets:
    """What the brain embeddings are aligned with, on the training device."""

    levels: list[torch.Tensor]  # per feature level, (n_images, dim) image features, rows = trial.image
    text_train: torch.Tensor | None = None  # (n_train_concepts, text_dim), rows = train concept ids
    text_val: torch.Tensor | None = None
    train_concepts: torch.Tensor | None = None  # per training trial: row in text_train
    val_concepts: torch.Tensor | None = None


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False


EpochCallback = Callable[[int, dict[str, float]], None]


def _score(metrics: dict[str, float], select_by: str) -> float:
    """Higher is better."""
    return -metrics["val_loss"] if select_by == "val_loss" else metrics["val_top1"]


def retrieval_top1(pred: torch.Tensor, images: torch.Tensor, image_ids: torch.Tensor) -> float:
    """Top-1 retrieval of each trial's image (``image_ids``) among the distinct images present,
    by cosine between ``pred`` and rows of the image table ``images``."""
    cand_ids = torch.unique(image_ids)
    cands = F.normalize(images[cand_ids], dim=1)
    best = cand_ids[(F.normalize(pred, dim=1) @ cands.T).argmax(1)]
    return float((best == image_ids).float().mean())


@torch.no_grad()
def validate(model: AlignmentModel, val: TrialTensors, targets: Targets, batch_size: int,
             embed_batch: int = 1024) -> dict[str, float]:
    """Validation loss (batches of ``batch_size`` in a fixed order, as training sees them) and
    top-1 retrieval among the validation images.

    The embeddings come from one eval-mode pass in chunks of ``embed_batch`` (in eval mode they
    do not depend on the batch), then the loss is taken batch by batch from them: the same
    values as embedding each batch separately, in fewer, larger forward passes.
    """
    if model.spec.modalities:
        return validate_modalities(model, val, targets, batch_size, embed_batch)
    was = model.training
    model.eval()
    table = model.image_table(targets.levels)
    chunk = max(batch_size, embed_batch)
    heads = [model.heads(val.x[i : i + chunk], val.subject[i : i + chunk])
             for i in range(0, len(val), chunk)]
    emb, txt, mse = (torch.cat(parts) for parts in zip(*heads, strict=True))
    total = emb.new_zeros(())
    for start in range(0, len(val), batch_size):
        sl = slice(start, start + batch_size)
        loss, _ = model.loss(emb[sl], table[val.image[sl]], txt[sl], targets.text_val,
                             None if targets.val_concepts is None else targets.val_concepts[sl],
                             mse_pred=mse[sl])
        total = total + loss * len(emb[sl])
    model.train(was)
    return {"val_loss": float(total) / max(len(val), 1),
            "val_top1": retrieval_top1(emb, table, val.image),
            "val_n_way": int(len(torch.unique(val.image)))}


def concept_rows(image_ids: torch.Tensor, concept_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(one image row per concept present, each trial's index among those concepts): how a
    table with rows per image, equal within a concept (a text level), is scored by concept."""
    concepts, index = torch.unique(concept_ids, return_inverse=True)
    rows = torch.zeros(len(concepts), dtype=torch.long, device=image_ids.device)
    rows[index] = image_ids  # any image of the concept: their rows are equal
    return rows, index


def concept_top1(pred: torch.Tensor, table: torch.Tensor, image_ids: torch.Tensor,
                 concept_ids: torch.Tensor) -> float:
    """Top-1 of each trial's concept among the concepts present, by cosine between ``pred`` and
    the concepts' rows of ``table`` (rows per image, equal within a concept: a text level)."""
    rows, index = concept_rows(image_ids, concept_ids)
    return retrieval_top1(pred, table[rows], index)


@torch.no_grad()
def validate_modalities(model: AlignmentModel, val: TrialTensors, targets: Targets, batch_size: int,
                        embed_batch: int = 1024) -> dict[str, float]:
    """:func:`validate` of a multimodal model: the loss with every term at its configured weight
    (no modality masked, the evaluation targets), ``val_top1`` of the fused embedding against the
    fused targets, and ``val_top1_<modality>`` of each modality (text ones: the trial's concept
    among the validation concepts)."""
    was = model.training
    model.eval()
    tables = model.modality_tables(targets.levels)
    outs = model.embed_modalities(val.x, val.subject, batch_size=max(batch_size, embed_batch))
    total = next(iter(tables.values())).new_zeros(())
    for start in range(0, len(val), batch_size):
        sl = slice(start, start + batch_size)
        loss, _ = model.modality_loss({k: v[sl] for k, v in outs.items()},
                                      {k: t[val.image[sl]] for k, t in tables.items()})
        total = total + loss * len(val.image[sl])
    model.train(was)
    out = {"val_loss": float(total) / max(len(val), 1),
           "val_top1": retrieval_top1(outs["fused"], tables["fused"], val.image),
           "val_n_way": int(len(torch.unique(val.image)))}
    for m, kind in model.modality_kinds().items():
        out[f"val_top1_{m}"] = (concept_top1(outs[m], tables[m], val.image, val.concept)
                                if kind == "text" else retrieval_top1(outs[m], tables[m], val.image))
    return out


def make_optimizer(params: list[torch.nn.Parameter] | list[dict[str, Any]],
                   cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (mindsight, ATM) or Adam (NICE) with the configured lr, betas and weight decay.

    ``params`` is a list of parameters, or of parameter groups (dicts as ``torch.optim`` takes
    them) whose missing keys take the configured values. PyTorch's fused implementation (one
    kernel for all parameters: the same update to float rounding, about 8× faster than the
    per-tensor loop on a CPU) where the parameters allow it.
    """
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    flat = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in flat)
    return kind(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                fused=fused or None)


def optimizer_groups(model: AlignmentModel, lr: float) -> list[torch.nn.Parameter] | list[dict[str, Any]]:
    """What the optimiser trains: the encoder's groups (:meth:`BrainEncoder.param_groups`) and
    one group of the model's other trainable parameters (temperature, text head, image side).

    An encoder that keeps the default (one group, nothing overridden) gives the flat list of
    all trainable parameters in ``model.parameters()`` order, the optimiser training always
    built, so its runs and resumable states are unchanged.
    """
    groups = param_groups_with_rest(model.encoder.param_groups(lr), model)
    if len(groups) == 1 and set(groups[0]) == {"params"}:
        return groups[0]["params"]
    return groups


def _patience_spent(state: dict[str, Any], cfg: TrainConfig) -> bool:
    """Early stopping: ``cfg.patience`` epochs in a row without a better selection score."""
    return cfg.patience is not None and state["bad_epochs"] >= cfg.patience


def fit(model: AlignmentModel, train: TrialTensors, val: TrialTensors, targets: Targets,
        cfg: TrainConfig, seed: int, workdir: str | Path | None = None, resume: bool = False,
        on_epoch_end: EpochCallback | None = None, world: World | None = None) -> FitResult:
    """Train ``model`` in place and leave it holding the selected (best-validation) weights.

    With ``workdir`` the selected weights go to ``model.safetensors`` whenever they improve, and
    the resumable state to ``last.safetensors`` after the last epoch and after any epoch that
    ends ``cfg.checkpoint_seconds`` or more after the previous write (0: every epoch); ``resume``
    continues from the latter, to the same result.

    With a ``world`` of several processes (:mod:`mindsight.train.distributed`) each process
    embeds its shard of a global batch of ``world.size × cfg.batch_size``, the loss is computed
    on the gathered global batch, DistributedDataParallel averages the gradients, and rank 0
    alone writes the checkpoints.
    """
    dev = targets.levels[0].device
    world = world if world is not None and world.size > 1 else None
    if world is not None and model.spec.modalities:
        raise ConfigError("distributed training of one multimodal model is not supported; use "
                          "--parallel folds (one fold per process)")
    if cfg.compile:  # in place: the state dict keeps its keys
        model.encoder.compile()
    step_model = wrap(model, world) if world is not None else None
    global_batch = cfg.batch_size * (world.size if world is not None else 1)
    writes = world is None or world.main
    precision = autocast_context(cfg.precision, dev)
    workdir = Path(workdir) if workdir is not None else None
    opt = make_optimizer(optimizer_groups(model, cfg.lr), cfg)
    state: dict[str, Any] = {"epoch": 0, "history": [], "best_score": None, "best_epoch": -1,
                             "bad_epochs": 0}
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    last = workdir / "last.safetensors" if workdir else None
    if resume and last is not None and last.is_file():
        tensors, meta = load_tensors(last)
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        optimizer_from_tensors(opt, {k: v.to(dev) for k, v in tensors.items()}, meta["optim"])
        set_rng_state(tensors)
        state = meta["loop"]
        best_weights = {k[5:]: v.to(dev) for k, v in tensors.items() if k.startswith("best.")}
    n = len(train)
    saved_at = time.perf_counter()  # when the resumable state was last written
    bar = progress_bar(total=cfg.epochs, initial=state["epoch"], desc=f"seed {seed}", unit="epoch",
                       leave=False, enabled=writes)
    for epoch in range(state["epoch"], cfg.epochs):
        if _patience_spent(state, cfg):
            break
        t0 = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=gen).to(dev)
        sums: dict[str, torch.Tensor] = {}  # summed on the device: no host sync per step
        steps = 0
        for start in range(0, n, global_batch):
            idx = perm[start : start + global_batch]
            if len(idx) < 2 or (cfg.drop_last and len(idx) < global_batch <= n):
                continue  # a lone trial has no negatives (and breaks batch norm); drop_last
                #           skips a partial last batch, unless the whole set is smaller than one
            img = train.image[idx]
            with precision:
                if model.spec.modalities:  # CogCapPro: a loss per modality and the fused one
                    loss, parts = model.multimodal_loss(train.inputs(idx, gen), train.subject[idx],
                                                        targets.levels, img, idx, epoch=epoch,
                                                        generator=gen)
                else:
                    def batch_loss(emb, txt, mse, img=img, idx=idx):
                        target = model.train_targets(targets.levels, img, idx, emb)
                        return model.loss(emb, target, txt, targets.text_train,
                                          None if targets.train_concepts is None
                                          else targets.train_concepts[idx], mse_pred=mse)

                    x, subject = train.inputs(idx, gen), train.subject[idx]
                    if world is None:
                        loss, parts = batch_loss(*model.heads(x, subject))
                    else:  # this process's shard; the loss on the gathered global batch
                        mine, sizes = shard(torch.arange(len(idx), device=dev), world)
                        loss, parts = step_model(x[mine], subject[mine], sizes, batch_loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            for k, v in {"loss": loss.detach(), **parts}.items():
                sums[k] = sums[k] + v if k in sums else v
        if steps == 0:
            raise DataFormatError(
                f"no training step in an epoch: {n} training sample(s); a contrastive step "
                "needs at least 2")
        logs = {k: float(v) / steps for k, v in sums.items()}
        logs.update(model.side_summary())
        logs.update(validate(model, val, targets, global_batch))  # batches as one process would
        logs.update(epoch=epoch, temperature=model.loss.temperature, seconds=time.perf_counter() - t0)
        score = _score(logs, cfg.select_by)
        if state["best_score"] is None or score > state["best_score"]:
            state.update(best_score=score, best_epoch=epoch, bad_epochs=0)
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if workdir is not None and writes:
                save_tensors(workdir / "model.safetensors", best_weights,
                             {"spec": model.spec.to_dict(), "epoch": epoch, "val": logs})
        else:
            state["bad_epochs"] += 1
        state["history"].append(logs)
        state["epoch"] = epoch + 1
        finished = state["epoch"] == cfg.epochs or _patience_spent(state, cfg)
        if last is not None and writes and (finished or time.perf_counter() - saved_at >= cfg.checkpoint_seconds):
            saved_at = time.perf_counter()
            opt_tensors, opt_meta = optimizer_to_tensors(opt)
            save_tensors(last, {**{f"model.{k}": v for k, v in model.state_dict().items()},
                                **{f"best.{k}": v for k, v in best_weights.items()},
                                **opt_tensors, **rng_state()},
                         {"optim": opt_meta, "loop": state})
        bar.set_postfix(loss=f"{logs['loss']:.3f}", val_loss=f"{logs['val_loss']:.3f}",
                        val_top1=f"{logs['val_top1']:.3f}", best=state["best_epoch"])
        bar.update(1)
        if on_epoch_end is not None:
            on_epoch_end(epoch, logs)
    bar.close()
    model.load_state_dict(best_weights)
    return FitResult(best_epoch=state["best_epoch"], best_score=float(state["best_score"]),
                     history=state["history"], stopped_early=state["epoch"] < cfg.epochs)
