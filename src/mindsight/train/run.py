"""A training run: read data, fit one model per fold (subject × seed), write RUN_DIR.

RUN_DIR layout (everything later steps need)::

    config.yaml                 the resolved configuration
    run.json                    protocol, package versions, folds, status
    folds/sub-01_seed-0/
        model.safetensors       selected weights + ModelSpec
        last.safetensors        resumable training state
        fold.json               what was trained on, selection history, chosen epoch

Training reads only the *training* partition; the test partition is first read by
:func:`mindsight.evaluate.evaluate_run`.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindsight._atomic import write_json
from mindsight.config import RunConfig
from mindsight.embed.base import (
    DEFAULT_TEXT_MODEL,
    check_modality,
    has_modality,
    resolve_device,
)
from mindsight.embed.features import FeatureTable, level_names, level_tables, optional_text_features
from mindsight.encoders import ENCODERS, count_parameters, is_closed_form
from mindsight.errors import ConfigError, LeakageError, MindsightError
from mindsight.io.datasets import find_dataset, read_images, read_recording
from mindsight.io.images import ImageSet
from mindsight.output import logger
from mindsight.recording import Recording
from mindsight.train.checkpoint import save_tensors
from mindsight.train.checks import check_partitions
from mindsight.train.data import TrialTensors, positions, subset_tensors, trial_tensors
from mindsight.train.distributed import World, check_parallel
from mindsight.train.fit import EpochCallback, Targets, fit, retrieval_top1, validate
from mindsight.train.model import AlignmentModel, ModelSpec
from mindsight.train.multimodal import ModalityLevels, multimodal_config

PACKAGES = ("mindsight", "torch", "numpy", "scipy", "scikit-learn", "mne", "braindecode",
            "open_clip_torch", "transformers", "timm")


@dataclass(frozen=True)
class Fold:
    test_subject: int
    train_subjects: tuple[int, ...]
    seed: int
    pooled: bool = False  # one model trained on every subject, shared by all their folds

    @property
    def name(self) -> str:
        return f"sub-{self.test_subject:02d}_seed-{self.seed}"

    @property
    def model_name(self) -> str:
        """The folder under ``folds/`` holding this fold's trained model."""
        return f"pooled_seed-{self.seed}" if self.pooled else self.name


def folds(cfg: RunConfig) -> list[Fold]:
    """Intra: train and test on each subject. LOSO: train on all others, test on the one left
    out. Pooled (cross-participant, Benchetrit et al.): one model trained on all subjects (each
    with its own subject layer or token), tested on each subject's test set."""
    subjects = sorted(set(cfg.data.subjects))
    out = []
    for s in subjects:
        train = {"intra": (s,), "loso": tuple(x for x in subjects if x != s),
                 "pooled": tuple(subjects)}[cfg.protocol]
        out.extend(Fold(s, train, seed, pooled=cfg.protocol == "pooled") for seed in cfg.train.seeds)
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def text_model_for(image_model: str, text_model: str) -> tuple[str, bool]:
    """(text model, whether a separate text head is needed). 'auto' uses the image model's own
    text tower when it has one (CLIP), else MiniLM through a learned head."""
    has_tower = has_modality(image_model, "text")
    if text_model == "auto":
        return (image_model, False) if has_tower else (DEFAULT_TEXT_MODEL, True)
    return text_model, not (has_tower and text_model == image_model)


def load_partition(cfg: RunConfig, subject: int, partition: str, images: ImageSet,
                   cache_dir: Any = None) -> Recording:
    """One subject's partition with the configured channels and time window."""
    if cfg.data.eeg is None:
        raise ConfigError("config: data.eeg is not set (pass --eeg DIR)")
    test_set = cfg.data.test_set if partition == "test" else "small"
    rec = read_recording(cfg.data.eeg, subject, partition, images, test_set=test_set,
                         cache_dir=cache_dir)
    if cfg.data.channels:
        rec = rec.pick(cfg.data.channels)
    if cfg.data.tmin is not None or cfg.data.tmax is not None:
        rec = rec.crop(cfg.data.tmin, cfg.data.tmax)
    return rec


def load_training(cfg: RunConfig, fold: Fold, images: ImageSet, cache_dir: Any = None) -> Recording:
    """The training partition of the fold's training subjects, concatenated."""
    recs = [load_partition(cfg, s, "train", images, cache_dir) for s in fold.train_subjects]
    return Recording.concatenate(recs) if len(recs) > 1 else recs[0]


def check_images(images: ImageSet) -> None:
    shared = images.overlapping_concepts()
    if shared:
        raise LeakageError(
            f"{images.root}: {len(shared)} concept(s) are in both the training and the test images "
            f"(e.g. {', '.join(shared[:5])}); zero-shot evaluation needs disjoint concepts"
            + (f" ({images.note})" if images.note else "")
        )


def _differences(a: dict, b: dict, prefix: str = "") -> Iterator[str]:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            yield from _differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            yield f"{prefix}{key}: {va!r} → {vb!r}"


def _prepare_out(cfg: RunConfig, out: Path, resume: bool) -> None:
    saved = out / "config.yaml"
    if saved.is_file():
        if not resume:
            raise MindsightError(
                f"{out} already holds a run; pass --resume to continue it, or choose another --out"
            )
        diff = list(_differences(RunConfig.load(saved).to_dict(), cfg.to_dict()))
        if diff:
            raise MindsightError(
                f"cannot resume {out}: the configuration differs from the saved one ({'; '.join(diff)})"
            )
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(saved)


def _on_main(world: World, fn: Any) -> None:
    """Run ``fn`` on rank 0; its error, if any, is raised on every process (none waits forever)."""
    error = None
    if world.main:
        try:
            fn()
        except MindsightError as exc:
            error = str(exc)
    error = world.broadcast_object(error)
    if error is not None:
        raise MindsightError(error)


def train_run(cfg: RunConfig, out: str | Path, *, resume: bool = False,
              cache_dir: Any = None, on_epoch_end: EpochCallback | None = None,
              world: World | None = None, parallel: str = "auto") -> Path:
    """Train every fold of ``cfg`` into ``out``; finished folds are kept when resuming.

    With a ``world`` of several processes (:mod:`mindsight.train.distributed`): ``parallel``
    ``'folds'`` deals the folds out (one model per process; a failing fold is reported, the
    others go on), ``'model'`` trains each fold with all processes, ``'auto'`` picks folds when
    there are at least as many folds left as processes. Rank 0 writes the run's files."""
    world = world or World()
    check_parallel(parallel)
    cfg.validate()
    out = Path(out)
    if cfg.data.images is None:
        raise ConfigError("config: data.images is not set (pass --images DIR)")
    ENCODERS.entry(cfg.model.encoder)  # unknown names fail before any work
    check_method(cfg)
    text_model, text_head = text_model_for(cfg.model.image_model, cfg.model.text_model)
    images = read_images(cfg.data.eeg, cfg.data.images, test_set=cfg.data.test_set)
    check_images(images)
    check_partitions(cfg, images, cache_dir=cache_dir)  # headers only: no test value is read
    _on_main(world, lambda: _prepare_out(cfg, out, resume))
    device = resolve_device(cfg.train.device) if world.size == 1 else world.device
    modalities, notes = None, {}
    if cfg.model.modalities:  # CogCapPro: each modality's levels, then the fused target
        modalities, feats, notes = modality_feature_tables(cfg, images["train"], text_model, cache_dir, device)
        levels = multimodal_levels(cfg, modalities)
        text_model = next((m.levels[0].partition("@")[0] for m in modalities if m.kind == "text"),
                          text_model)
    else:
        levels = run_levels(cfg)
        feats = level_tables(images["train"], levels, cache_dir=cache_dir, device=device)
    texts, text_note = None, None
    if cfg.train.text_weight > 0:
        texts, text_note = training_texts(images["train"].concept_names, text_model, cache_dir, device)
    run_path = out / "run.json"
    run = json.loads(run_path.read_text()) if run_path.is_file() else {
        "created": datetime.now(UTC).isoformat(timespec="seconds")}
    run.update({
        "protocol": {
            "dataset": find_dataset(cfg.data.eeg)[0] if cfg.data.eeg else None,
            "test_set": cfg.data.test_set,
            "protocol": cfg.protocol, "subjects": sorted(set(cfg.data.subjects)),
            "encoder": cfg.model.encoder, "image_model": cfg.model.image_model,
            "image_side": cfg.model.image_side, "levels": levels,
            "text_model": text_model if (texts is not None or any(
                m.kind == "text" for m in modalities or ())) else None,
            "text_note": text_note,
            "selection": "validation", "val_fraction": cfg.data.val_fraction,
            "train_trials": cfg.data.train_trials, "seeds": list(cfg.train.seeds),
            "epochs_max": cfg.train.epochs,
            **({"modalities": [m.name for m in modalities], "modality_notes": notes}
               if modalities is not None else {}),
        },
        "versions": versions(), "device": device,
        "folds": [f.name for f in folds(cfg)], "status": "running",
    })
    if world.main:
        write_json(run_path, run)
    todo, seen = [], set()
    for fold in folds(cfg):
        done = out / "folds" / fold.model_name / "fold.json"
        if fold.model_name in seen or (done.is_file() and json.loads(done.read_text()).get("complete")):
            continue
        seen.add(fold.model_name)  # a pooled model serves several folds: trained once
        todo.append(fold)
    if parallel == "auto":
        parallel = "folds" if len(todo) >= world.size > 1 else "model"
    mine = todo[world.rank :: world.size] if parallel == "folds" else todo
    failed: dict[str, str] = {}
    for fold in mine:
        fold_dir = out / "folds" / fold.model_name
        fold_dir.mkdir(parents=True, exist_ok=True)
        args = (cfg, fold, fold_dir, images, feats, texts, text_head, text_model, device)
        kwargs = dict(resume=resume, cache_dir=cache_dir, on_epoch_end=on_epoch_end, modalities=modalities)
        if parallel == "model":
            train_fold(*args, **kwargs, world=world)
            continue
        try:  # one fold per process: a failure is reported, the other folds go on
            train_fold(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (reported below, with the fold's name)
            if world.size == 1:
                raise
            failed[fold.name] = f"{type(exc).__name__}: {exc}"
            logger.warning("fold %s failed on process %d: %s", fold.name, world.rank, failed[fold.name])
    for part in world.all_gather_object(failed):
        failed.update(part)
    if world.size > 1:
        run.update(parallel={"processes": world.size, "mode": parallel, "device": device})
    run.update(status="failed" if failed else "complete",
               finished=datetime.now(UTC).isoformat(timespec="seconds"))
    if failed:
        run["failed_folds"] = failed
    if world.main:
        write_json(run_path, run)
    world.barrier()
    if failed:
        raise MindsightError(f"{len(failed)} fold(s) failed ({'; '.join(f'{k}: {v}' for k, v in failed.items())}); "
                             f"the others are in {out}; fix and rerun with --resume")
    return out


def run_levels(cfg: RunConfig) -> list[str]:
    """The ``model@view`` feature levels of ``cfg`` (the image model's views, then the extra
    models'); of a multimodal configuration: every modality's levels, then the fused target
    (a trained model's spec lists those it was trained with: a skipped modality is not there)."""
    if cfg.model.modalities:
        text_model, _ = text_model_for(cfg.model.image_model, cfg.model.text_model)
        return multimodal_levels(cfg, run_modalities(cfg, text_model))
    return level_names(cfg.model.image_model, cfg.model.image_views, cfg.model.extra_image_models)


def multimodal_levels(cfg: RunConfig, modalities: list[ModalityLevels]) -> list[str]:
    """The levels a multimodal model aligns with: each modality's, then the fused target's."""
    return [lv for m in modalities for lv in m.levels] + [fused_level(cfg)]


def fused_level(cfg: RunConfig) -> str:
    """The fused embedding's target: the image model's features of the sharp picture, the space
    a generator is conditioned in."""
    return f"{cfg.model.image_model}@sharp"


def run_modalities(cfg: RunConfig, text_model: str) -> list[ModalityLevels]:
    """Each of ``model.modalities`` with its kind and feature levels
    (:mod:`mindsight.embed.modalities`); an unknown name lists the known ones."""
    from mindsight.embed.modalities import get_modality

    mm = multimodal_config(cfg.model.multimodal, cfg.model.modalities)
    out = []
    for name in cfg.model.modalities:
        modality = get_modality(name, depth_model=mm.depth_model)
        out.append(ModalityLevels(name, modality.kind, tuple(
            modality.levels(cfg.model.image_model, text_model, mm.uncertainty))))
    return out


def modality_feature_tables(cfg: RunConfig, partition: Any, text_model: str, cache_dir: Any,
                            device: str) -> tuple[list[ModalityLevels], list[FeatureTable], dict[str, str]]:
    """(the modalities that can be had, their level tables then the fused target's, a note per
    skipped modality): a modality whose weights are unavailable (depth offline) is left out with
    a note (:func:`mindsight.embed.modalities.modality_tables`); any other error stops."""
    from mindsight.embed.modalities import modality_tables

    mm = multimodal_config(cfg.model.multimodal, cfg.model.modalities)
    wanted = run_modalities(cfg, text_model)
    tables, notes = modality_tables(partition, list(cfg.model.modalities), cfg.model.image_model,
                                    text_model, mm.uncertainty, cache_dir=cache_dir, device=device,
                                    depth_model=mm.depth_model)
    kept = [m for m in wanted if m.name in tables]
    if not kept:
        raise ConfigError(f"config: none of model.modalities ({', '.join(cfg.model.modalities)}) "
                          f"can be had: {'; '.join(f'{k}: {v}' for k, v in notes.items())}")
    fused = level_tables(partition, [fused_level(cfg)], cache_dir=cache_dir, device=device)
    return kept, [t for m in kept for t in tables[m.name]] + fused, dict(notes)


def check_method(cfg: RunConfig) -> None:
    """Unknown image models, views, modalities or image sides fail before any work, listing the
    known ones; a closed-form encoder cannot train a learned image side or a multimodal model."""
    from mindsight.train.image_side import IMAGE_SIDES

    check_modality(cfg.model.image_model, "image")
    for m in cfg.model.extra_image_models:
        check_modality(m, "image")
    refuse_closed_form_multimodal(cfg)
    run_levels(cfg)  # parses every view name (and, multimodal, every modality name)
    side = IMAGE_SIDES.get(cfg.model.image_side)
    if is_closed_form(cfg.model.encoder) and side.learned:
        raise ConfigError(f"config: encoder {cfg.model.encoder!r} is fitted in closed form and "
                              f"cannot train the learned image side {cfg.model.image_side!r}; use "
                              "model.image_side: fixed or a gradient-trained encoder")


def refuse_closed_form_multimodal(cfg: RunConfig) -> None:
    """A multimodal model trains its heads and fusion by gradient descent."""
    if cfg.model.modalities and is_closed_form(cfg.model.encoder):
        raise ConfigError(f"config: encoder {cfg.model.encoder!r} is fitted in closed form; a "
                          "multimodal model (model.modalities) trains its heads and fusion by "
                          "gradient descent: use a gradient-trained encoder (e.g. atm)")


def training_texts(names: tuple[str, ...], text_model: str, cache_dir: Any,
                   device: str) -> tuple[FeatureTable | None, str | None]:
    """The concept-name features of the text term, or ``(None, reason)`` with one logged note
    when they cannot be had (image features imported, no text weights): retrieval needs only
    the image features, so training goes on without the term."""
    texts, reason = optional_text_features(names, text_model, cache_dir=cache_dir, device=device)
    if texts is None:
        logger.info("%s: training without the concept-name text term; zero-shot classification "
                    "will be null unless they are available at evaluation", reason)
    return texts, reason


def train_fold(cfg: RunConfig, fold: Fold, fold_dir: Path, images: ImageSet, feats: list[FeatureTable],
               texts: FeatureTable | None, text_head: bool, text_model: str, device: str, *,
               resume: bool, cache_dir: Any,
               on_epoch_end: EpochCallback | None,
               modalities: list[ModalityLevels] | None = None,
               world: World | None = None) -> dict[str, Any]:
    """Read the fold's training subjects, fit from a fresh initialisation, write fold.json
    (with a ``world``: all its processes train the fold, rank 0 writes)."""
    t0 = time.perf_counter()
    rec = load_training(cfg, fold, images, cache_dir)
    _, info = fit_recording(cfg, rec, feats, texts, seed=fold.seed, text_head=text_head,
                            text_model=text_model, device=device, workdir=fold_dir, resume=resume,
                            on_epoch_end=on_epoch_end, modalities=modalities, world=world)
    info.update(test_subject=fold.test_subject, seconds=time.perf_counter() - t0, complete=True)
    if world is not None and world.size > 1:
        info["world_size"] = world.size
    if world is None or world.main:
        write_json(fold_dir / "fold.json", info)
    return info


def model_spec(cfg: RunConfig, rec: Recording, dim: int, *, subjects: list[int],
               text_dim: int | None = None, text_weight: float | None = None,
               image_model: str = "", text_model: str | None = None,
               level_dims: list[int] | None = None, n_pairs: int = 0,
               modalities: list[ModalityLevels] | None = None) -> ModelSpec:
    """What ``cfg`` builds for epochs shaped like ``rec`` (channels, times) and ``dim``-d image
    embeddings: the encoder, its hyperparameters, the input scaler, the loss and the image side
    over feature levels of sizes ``level_dims``.

    A multimodal configuration (``model.modalities``) builds one embedding per modality of
    ``modalities`` (default: :func:`run_modalities`, all of them) and their fusion; its levels
    are theirs, then the fused target's (``level_dims``: default ``dim`` each).
    """
    tokens = ENCODERS.get(cfg.model.encoder).subject_layers and cfg.model.subject_tokens
    levels, multimodal = [], {}
    if not cfg.model.modalities:
        levels = run_levels(cfg)
    else:
        if modalities is None:
            modalities = run_modalities(cfg, text_model or text_model_for(
                cfg.model.image_model, cfg.model.text_model)[0])
        levels = multimodal_levels(cfg, modalities)
        multimodal = multimodal_settings(cfg, [m.name for m in modalities])
        level_dims = list(level_dims) if level_dims else [dim] * len(levels)
    return ModelSpec(
        encoder=cfg.model.encoder, n_chans=rec.n_chans, n_times=rec.n_times, sfreq=rec.sfreq,
        n_outputs=dim, params=dict(cfg.model.params), text_dim=text_dim,
        clip_weight=cfg.train.clip_weight,
        text_weight=cfg.train.text_weight if text_weight is None else text_weight,
        temperature=cfg.train.temperature, learn_temperature=cfg.train.learn_temperature,
        ch_names=list(rec.ch_names), times=[float(t) for t in rec.times],
        subjects=list(subjects) if tokens else [], image_model=image_model, text_model=text_model,
        scaler=cfg.data.scaler, clamp=cfg.data.clamp, mse_weight=cfg.train.mse_weight,
        logit_scale=cfg.train.logit_scale, normalize_brain=cfg.train.normalize_brain,
        text_loss=cfg.train.text_loss, levels=levels,
        level_dims=list(level_dims) if level_dims else [dim], image_side=cfg.model.image_side,
        image_side_params=dict(cfg.model.image_side_params), n_pairs=n_pairs,
        modalities=[m.name for m in modalities or ()],
        modality_kinds=[m.kind for m in modalities or ()],
        modality_levels=[len(m.levels) for m in modalities or ()], multimodal=multimodal,
    )


def multimodal_settings(cfg: RunConfig, kept: list[str]) -> dict[str, Any]:
    """``model.multimodal`` resolved for the modalities ``kept`` (a skipped one dropped from
    ``weights``); ``mask_count`` lowered, with a note, when fewer modalities are left than it
    needs (at least one enters the fusion)."""
    mm = multimodal_config(cfg.model.multimodal, cfg.model.modalities)
    mm.weights = {m: mm.weights[m] for m in kept}
    if mm.mask_count > len(kept) - 1:
        logger.info("model.multimodal.mask_count %d lowered to %d: %d modalit%s left (%s)",
                    mm.mask_count, len(kept) - 1, len(kept), "y" if len(kept) == 1 else "ies",
                    ", ".join(kept))
        mm.mask_count = len(kept) - 1
    return mm.to_dict()


def fit_recording(cfg: RunConfig, rec: Recording, feats: FeatureTable | list[FeatureTable],
                  texts: FeatureTable | None = None, *, seed: int = 0, text_head: bool = True,
                  text_model: str | None = None, device: str = "cpu",
                  workdir: Path | None = None, resume: bool = False,
                  on_epoch_end: EpochCallback | None = None,
                  modalities: list[ModalityLevels] | None = None,
                  world: World | None = None) -> tuple[AlignmentModel, dict[str, Any]]:
    """Fit one model on the training recording ``rec`` (validation concepts split off inside).

    ``feats`` (one table per feature level, or one table) rows follow ``rec.trials.image``;
    ``texts`` rows follow ``rec.concept_names``. Returns the selected model and a summary of the
    fit. A multimodal configuration takes ``modalities`` (default: all of ``model.modalities``)
    and ``feats`` = their levels' tables in order, then the fused target's.
    """
    tables = [feats] if isinstance(feats, FeatureTable) else list(feats)
    feats = tables[-1] if cfg.model.modalities else tables[0]  # the image model's embeddings
    if cfg.model.modalities:
        refuse_closed_form_multimodal(cfg)  # e.g. an analysis retraining with --encoder ridge
        if modalities is None:
            modalities = run_modalities(cfg, text_model or text_model_for(
                cfg.model.image_model, cfg.model.text_model)[0])
        texts, text_head = None, False  # the text modality is the text space
        text_model = next((m.levels[0].partition("@")[0] for m in modalities if m.kind == "text"),
                          None)
    train_rec, val_rec = rec.split_validation(cfg.data.val_fraction, seed=seed, by=cfg.data.val_split)
    if cfg.data.train_trials != "single":  # validation on averages for 'subsets' too
        val_rec = val_rec.average_repetitions()
    subsets = cfg.data.train_trials == "subsets" and not is_closed_form(cfg.model.encoder)
    if cfg.data.train_trials != "single" and not subsets:  # a closed-form fit sees each sample once
        train_rec = train_rec.average_repetitions()
    to_tensors = subset_tensors if subsets else trial_tensors
    train = to_tensors(train_rec, len(feats)).to(device)
    val = trial_tensors(val_rec, len(feats)).to(device)
    targets = Targets(levels=[torch.from_numpy(t.features).to(device) for t in tables])
    if texts is not None:
        table = torch.from_numpy(texts.features).to(device)
        tr_c, va_c = np.unique(train_rec.trials.concept), np.unique(val_rec.trials.concept)
        targets.text_train, targets.text_val = table[tr_c], table[va_c]
        targets.train_concepts = positions(train.concept, tr_c)
        targets.val_concepts = positions(val.concept, va_c)
    subjects = sorted({int(s) for s in rec.trials.subject})
    spec = model_spec(cfg, rec, feats.dim, subjects=subjects,
                      text_dim=texts.dim if (texts is not None and text_head) else None,
                      text_weight=cfg.train.text_weight if texts is not None else 0.0,
                      image_model=feats.model,
                      text_model=text_model if (texts is not None or modalities) else None,
                      level_dims=[t.dim for t in tables], n_pairs=len(train), modalities=modalities)
    if len(tables) != len(spec.level_list()):
        raise ConfigError(f"config names {len(spec.level_list())} feature levels "
                              f"({', '.join(spec.level_list())}) but {len(tables)} tables were given")
    torch.manual_seed(seed)  # fresh initialisation for every fold
    model = AlignmentModel(spec).to(device)
    model.scaler.fit(train.x)  # training trials only: never validation or test statistics
    info: dict[str, Any] = {
        "train_subjects": subjects, "seed": seed, "n_params": count_parameters(model.encoder),
        "n_train_trials": len(train), "n_val_trials": len(val),
        "n_train_concepts": int(len(np.unique(train_rec.trials.concept))),
        "n_val_concepts": int(len(np.unique(val_rec.trials.concept))),
    }
    if is_closed_form(cfg.model.encoder):
        info.update(_fit_closed_form(model, train, val, targets))
        if workdir is not None and (world is None or world.main):
            save_tensors(workdir / "model.safetensors", model.state_dict(),
                         {"spec": spec.to_dict(), "epoch": 0, "val": info["val"]})
    else:
        result = fit(model, train, val, targets, cfg.train, seed, workdir=workdir,
                     resume=resume, on_epoch_end=on_epoch_end, world=world)
        info.update(best_epoch=result.best_epoch, epochs_run=len(result.history),
                    stopped_early=result.stopped_early, history=result.history,
                    val=result.history[result.best_epoch])
    return model, info


def _fit_closed_form(model: AlignmentModel, train: TrialTensors, val: TrialTensors,
                     targets: Targets) -> dict[str, Any]:
    """The encoder's closed-form ``fit`` (:meth:`~mindsight.encoders.BrainEncoder.fit`; ridge:
    every alpha, the best on validation top-1 kept); then a least-squares text head (if any)
    from the predicted embeddings to the concept-name embeddings."""
    enc = model.encoder
    table = model.image_table(targets.levels)  # a fixed image side: its evaluation targets

    def top1(pred: torch.Tensor, _: torch.Tensor) -> float:
        return retrieval_top1(pred, table, val.image)

    scores = enc.fit(x=model.scaler(train.x), y=table[train.image], x_val=model.scaler(val.x),
                     y_val=table[val.image], score=top1)
    if model.text_head is not None and targets.text_train is not None:
        emb, _ = model.embed(train.x, train.subject)
        design = torch.cat([emb, torch.ones(len(emb), 1, device=emb.device)], 1).double()
        goal = targets.text_train[targets.train_concepts].double()
        gram = design.T @ design + 1e-3 * torch.eye(design.shape[1], device=emb.device,
                                                   dtype=torch.float64) * float(design.pow(2).mean())
        sol = torch.linalg.solve(gram, design.T @ goal)
        with torch.no_grad():
            model.text_head.weight.copy_(sol[:-1].T.float())
            model.text_head.bias.copy_(sol[-1].float())
    chosen = enc.selects  # e.g. 'alpha': fold.json keeps the choice and every candidate's score
    return {chosen: float(getattr(enc, chosen)),
            f"{chosen}_scores": {str(k): v for k, v in scores.items()},
            "val": validate(model, val, targets, 1024)}
