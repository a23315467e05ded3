"""Evaluate a training run on the test set, once: RUN_DIR → RUN_DIR/metrics.json.

For every fold the selected checkpoint embeds the held-out subject's test EEG (repetition-
averaged, single trials, and averages of 1, 2, 4, … repetitions); the embeddings are compared
with the test images (retrieval) and the test concept names (classification). Folds of one
subject are averaged over seeds; the headline numbers are the mean over subjects, with a 95 %
interval over subjects (or over seeds when there is one subject).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindsight._atomic import write_json
from mindsight.config import RunConfig
from mindsight.embed.base import has_modality
from mindsight.embed.features import FeatureTable, optional_text_features
from mindsight.errors import DataFormatError
from mindsight.evaluate.centres import Centres, centre_features, centre_metrics
from mindsight.evaluate.retrieval import retrieval_metrics
from mindsight.evaluate.stats import mean_ci
from mindsight.output import logger
from mindsight.recording import Recording
from mindsight.run import Run, load_model
from mindsight.train.checkpoint import save_tensors
from mindsight.train.data import TrialTensors, trial_tensors
from mindsight.train.fit import concept_rows
from mindsight.train.model import AlignmentModel, ModelSpec

__all__ = ["classification_texts", "evaluate_fold", "evaluate_run", "load_model", "repetition_steps",
           "summarise"]


def _check_compatible(model: AlignmentModel, rec: Recording, tables: list[FeatureTable],
                      where: Path) -> None:
    spec = model.spec
    for level, table, dim in zip(spec.level_list(), tables, spec.level_dim_list(), strict=True):
        if table.dim != dim:
            raise DataFormatError(
                f"{where}: embedding size mismatch: the checkpoint was trained on {dim}-d "
                f"{level} features but the test features are {table.dim}-d"
            )
    if list(rec.ch_names) != list(spec.ch_names) or rec.n_times != spec.n_times:
        raise DataFormatError(
            f"{where}: the test EEG has {rec.n_chans} channels × {rec.n_times} samples but the "
            f"model was trained on {len(spec.ch_names)} × {spec.n_times} (channels or time window differ)"
        )


def repetition_steps(n_max: int) -> list[int]:
    """1, 2, 4, … below ``n_max``, then ``n_max``: the repetition counts curves are drawn at."""
    steps = [1]
    while steps[-1] * 2 < n_max:
        steps.append(steps[-1] * 2)
    return sorted(set(steps + [n_max]))


def evaluate_fold(model: AlignmentModel, rec: Recording, image_feats: torch.Tensor,
                  text_feats: torch.Tensor | None, *, single_trial: bool = True,
                  n_draws: int = 100, text_reason: str | None = None,
                  centres: Centres | None = None,
                  modality_tables: dict[str, torch.Tensor] | None = None
                  ) -> tuple[dict[str, Any], torch.Tensor]:
    """All metrics of one fold on its test recording, and the averaged-EEG embeddings.
    Without ``text_feats``, ``text_reason`` (if given) is reported as a null classification.
    A multimodal model's ``modality_tables`` (:meth:`AlignmentModel.modality_tables` of the test
    levels) add ``modalities``: top-1/top-5 of every modality and of the fused embedding."""
    avg = rec.average_repetitions()
    t = trial_tensors(avg, len(image_feats))
    emb, txt = model.embed(t.x, t.subject)
    out = retrieval_metrics(emb, image_feats, t.image.to(emb.device), n_draws=n_draws)
    if modality_tables is not None and model.spec.modalities:
        out["modalities"] = modality_metrics(model, t, modality_tables, out)
    if text_feats is not None:
        cls = retrieval_metrics(txt, text_feats, t.concept.to(emb.device), k_ways=())
        out["classification"] = {k: cls[k] for k in ("top1", "top5", "chance_top1", "n_way")}
    elif text_reason is not None:
        out.update(classification=None, classification_reason=text_reason)
    if centres is not None:
        out["centres"] = centre_metrics(emb, t.image, centres)
    counts = np.unique(np.stack([rec.trials.subject, rec.trials.image]), axis=1, return_counts=True)[1]
    n_max = int(counts.min())
    if single_trial and n_max > 1:
        s = trial_tensors(rec, len(image_feats))
        s_emb, _ = model.embed(s.x, s.subject)
        st = retrieval_metrics(s_emb, image_feats, s.image.to(s_emb.device), k_ways=())
        out["single_trial"] = {k: st[k] for k in ("top1", "top5", "median_rank", "n_queries")}
    curve: dict[str, list] = {"n": [], "top1": [], "top5": []}
    for n in repetition_steps(n_max):
        if n == n_max == counts.max():  # every repetition of every image: the scores above
            m = out
        else:
            r = trial_tensors(rec.average_repetitions(n), len(image_feats))
            r_emb, _ = model.embed(r.x, r.subject)
            m = retrieval_metrics(r_emb, image_feats, r.image.to(r_emb.device), k_ways=())
        for key, val in (("n", n), ("top1", m["top1"]), ("top5", m["top5"])):
            curve[key].append(val)
    out["repetitions"] = curve
    return out, emb


def modality_metrics(model: AlignmentModel, trials: TrialTensors, tables: dict[str, torch.Tensor],
                     fused: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Top-1/top-5 of each modality's embedding of the (averaged) test ``trials``: image-kind
    ones retrieve the trial's image among the test images (its modality's targets: the edge
    map's, the depth map's features); text ones the trial's concept among the test concepts;
    ``fused`` repeats the headline retrieval's (``fused``: those metrics)."""
    outs = model.embed_modalities(trials.x, trials.subject)
    out = {}
    for m, kind in model.modality_kinds().items():
        emb, table = outs[m], tables[m].to(outs[m].device)
        image = trials.image.to(emb.device)
        if kind == "text":  # rows per image, equal within a concept: one row per concept
            rows, index = concept_rows(image, trials.concept.to(emb.device))
            scores = retrieval_metrics(emb, table[rows], index, k_ways=())
        else:
            scores = retrieval_metrics(emb, table, image, k_ways=())
        out[m] = {"top1": scores["top1"], "top5": scores["top5"]}
    out["fused"] = {"top1": fused["top1"], "top5": fused["top5"]}
    return out


def _mean_tree(items: list[Any]) -> Any:
    """Element-wise mean of equally shaped nested dicts/lists of numbers."""
    first = items[0]
    if isinstance(first, dict):
        if not all(isinstance(it, dict) for it in items):  # e.g. classification null in one fold
            return None
        return {k: _mean_tree([it[k] for it in items]) for k in first if all(k in it for it in items)}
    if isinstance(first, list):
        return [_mean_tree(list(col)) for col in zip(*items, strict=True)]
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first
    return float(np.mean(items)) if not isinstance(first, int) else first


def evaluate_run(run_dir: str | Path | Run, *, device: str = "auto", cache_dir: Any = None,
                 single_trial: bool = True, n_draws: int = 100,
                 centres: str | Path | None = None) -> dict[str, Any]:
    """Evaluate every fold of ``run_dir`` and write ``metrics.json`` (returned as a dict).
    ``centres``: a THINGS image folder; adds NICE's centre evaluation (``evaluate.centres``).
    An open :class:`~mindsight.run.Run` may be given instead of a folder (its device and cache
    are used)."""
    run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir, device=device, cache_dir=cache_dir)
    return _evaluate(run, single_trial=single_trial, n_draws=n_draws, centres=centres)


def _evaluate(run: Run, *, single_trial: bool, n_draws: int, centres: str | Path | None) -> dict[str, Any]:
    cfg, device, info, images = run.config, run.device, run.info, run.images
    image_model = cfg.model.image_model
    centre_set = None if centres is None else centre_features(
        centres, images["test"], image_model, cache_dir=run.cache_dir, device=device)
    text_cache: dict[str, tuple[torch.Tensor | None, str | None]] = {}
    fold_results = []
    for fold in run.folds:
        fold_dir, fold_info = run.trained(fold)
        model = run.model(fold)
        rec = run.recording(fold.test_subject, "test")
        levels = run.features("test", model.spec.level_list())
        _check_compatible(model, rec, levels, fold_dir)
        table = run.image_targets(fold)
        text, text_reason = classification_texts(model.spec, image_model, images["test"].concept_names,
                                                 text_cache, run.cache_dir, device)
        tables = (model.modality_tables(run.level_tensors("test", model.spec.level_list()))
                  if model.spec.modalities else None)
        metrics, emb = evaluate_fold(model, rec, table,
                                     text, single_trial=single_trial, n_draws=n_draws,
                                     text_reason=text_reason, centres=centre_set,
                                     modality_tables=tables)
        # a pooled model serves every subject: one embeddings file per test subject
        emb_name = f"test_embeddings_{fold.name}" if fold.pooled else "test_embeddings"
        save_tensors(fold_dir / f"{emb_name}.safetensors", {"embeddings": emb, "image_table": table},
                     {"images": list(levels[0].keys), "image_model": image_model})
        metrics.update(fold=fold.name, subject=fold.test_subject, seed=fold.seed,
                       epoch=fold_info.get("best_epoch", 0), val=fold_info.get("val"))
        fold_results.append(metrics)
    out = summarise(fold_results, cfg, info)
    write_json(run.path / "metrics.json", out)
    return out


def classification_texts(spec: ModelSpec, image_model: str, names: tuple[str, ...],
                         cache: dict[str, tuple[torch.Tensor | None, str | None]], cache_dir: Any,
                         device: str) -> tuple[torch.Tensor | None, str | None]:
    """The test concept names in the model's text space, or ``(None, reason)``: a model with
    no text head over an image model with no text tower has no text space, and a CLIP text
    tower whose features were neither imported nor computable (no weights) gives none; retrieval
    is scored either way. One note is logged per text model; ``cache`` keeps the answer."""
    text_model = spec.text_model or (image_model if has_modality(image_model, "text") else None)
    if text_model is None:
        return None, (f"no text space: the model has no text head (trained without the text term) "
                      f"and {image_model} has no text tower")
    if text_model not in cache:
        table, reason = optional_text_features(names, text_model, cache_dir=cache_dir, device=device)
        if table is None:
            logger.info("%s: zero-shot classification is null (retrieval is scored)", reason)
        cache[text_model] = (None if table is None else torch.from_numpy(table.features).to(device),
                             reason)
    return cache[text_model]


def summarise(fold_results: list[dict[str, Any]], cfg: RunConfig, run: dict[str, Any]) -> dict[str, Any]:
    """Per-subject means over seeds, the mean over subjects, and 95 % intervals."""
    subjects = sorted({r["subject"] for r in fold_results})
    per_subject = {}
    for s in subjects:
        rows = [r for r in fold_results if r["subject"] == s]
        strip = [{k: v for k, v in r.items() if k not in ("fold", "subject", "seed", "epoch", "val")}
                 for r in rows]
        per_subject[str(s)] = {**_mean_tree(strip), "n_seeds": len(rows)}
    out = _mean_tree(list(per_subject.values()))
    out.pop("n_seeds", None)
    over = "subjects" if len(subjects) > 1 else "seeds"
    source = list(per_subject.values()) if over == "subjects" else fold_results
    keys = {"top1": ("top1",), "top5": ("top5",), "median_rank": ("median_rank",),
            "classification_top1": ("classification", "top1"),
            "classification_top5": ("classification", "top5"), "centres_top1": ("centres", "top1")}
    ci = {}
    for name, path in keys.items():
        vals = []
        for r in source:
            node = r
            for p in path:
                node = node.get(p) if isinstance(node, dict) else None
            if node is not None:
                vals.append(node)
        if vals:
            ci[name] = mean_ci(vals)
    out["ci95"] = {"over": over, **ci}
    out["per_subject"] = per_subject
    out["folds"] = [{k: r[k] for k in ("fold", "subject", "seed", "epoch", "top1", "top5")}
                    for r in fold_results]
    protocol = dict(run.get("protocol", {}))
    protocol.update(
        subjects=subjects, selection="validation",
        epochs_chosen={r["fold"]: r["epoch"] for r in fold_results},
        test_trials="averaged over all repetitions (single_trial: each repetition)",
        k_way_draws="fixed-seed random distractors, mean over draws",
        versions=run.get("versions", {}),
        evaluated=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    out["protocol"] = protocol
    return out
