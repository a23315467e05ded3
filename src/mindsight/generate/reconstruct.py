"""``mindsight reconstruct RUN_DIR``: reconstruct every test image of one fold, and score it.

Everything is fitted on the fold's *training* images only (the prior and the low-level decoder;
the fold's validation concepts select their epoch and regularisation), then applied once to the
test EEG. Three sets of pictures are scored against the seen images with the same metrics:

- ``reconstructed``: EEG → (prior) → generator, img2img from the low-level blurry image; or,
  with ``finetune`` (AVDE's stage 2, generators that declare ``finetunes``), EEG → the generator
  whose condition map was fine-tuned on the fold's (brain embedding, image) training pairs. For a
  multimodal model (CognitionCapturerPro) this is the fused embedding (+ the text head's nearest
  training caption as prompt), and ``image_only``, the image head's embedding alone, is made and
  scored the same way (:mod:`mindsight.generate.conditions`);
- ``upper_bound``: the generator given the *true* image embedding of each test image (with
  ``finetune``: the generator *before* fine-tuning, the one that was trained on image embeddings);
- ``chance``: random training images (what any picture of the domain scores).

Output (default ``RUN_DIR/reconstruction/<generator>/``): ``seen/``, ``reconstructed/`` (and ``image_only/``),
``blurry/``, ``upper_bound/``, ``chance/`` (one PNG per test item, same names), ``grid.png`` and
``reconstruction.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindsight._atomic import atomic_path, write_json
from mindsight.errors import ConfigError, DataFormatError
from mindsight.evaluate.reconstruction import load_images
from mindsight.generate.base import Generator, load_generator
from mindsight.generate.conditions import Conditioning, conditionings
from mindsight.generate.finetune import FinetuneConfig
from mindsight.generate.lowlevel import LowLevelDecoder
from mindsight.generate.pipeline import ReconstructionPipeline
from mindsight.generate.prior import DiffusionPrior, PriorConfig
from mindsight.output import logger
from mindsight.run import Run

PRIOR_VERSION = 3  # bump when the prior's fitting changes, so cached priors are refitted
FINETUNE_VERSION = 1  # the same for cached stage-2 fine-tunings


@dataclass
class ReconstructConfig:
    """Settings of one reconstruction job (recorded in ``reconstruction.json``)."""

    generator: str = "builtin"
    generator_options: dict[str, Any] = field(default_factory=dict)  # e.g. weights=, model_id=
    fold: str | None = None  # default: the run's first fold
    # AVDE's stage 2; None: on for generators that declare finetunes (then no prior, as AVDE)
    finetune: bool | None = None
    finetune_config: FinetuneConfig = field(default_factory=FinetuneConfig)
    prior: bool | None = None  # None: on unless the generator is fine-tuned
    prior_config: PriorConfig = field(default_factory=PriorConfig)
    lowlevel: bool = True
    postprocess: bool = False  # Benchetrit et al.'s latent re-standardisation
    strength: float = 0.8  # img2img strength from the blurry image (1 = ignore it)
    steps: int | None = None  # generator's default when None
    guidance_scale: float | None = None
    seed: int = 0
    max_images: int | None = None  # first N test items (all by default)
    n_grid: int = 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def save_images(images: torch.Tensor, folder: Path, names: list[str]) -> None:
    """One PNG per image, each written atomically."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    for a, name in zip(arr, names, strict=True):
        with atomic_path(folder / f"{name}.png") as tmp:
            Image.fromarray(a).save(tmp, format="PNG")


def resolve_conditioning(rc: ReconstructConfig, gen: type[Generator] | Generator) -> ReconstructConfig:
    """``rc`` with ``finetune`` and ``prior`` decided: fine-tuning is on by default for generators
    that declare ``finetunes``; the prior by default when there is no fine-tuning. A fine-tuned
    generator takes brain embeddings, so it cannot also take the prior's image embeddings."""
    finetune = gen.finetunes if rc.finetune is None else rc.finetune
    if finetune and not gen.finetunes:
        raise ConfigError(f"generator {gen.name!r} cannot be fine-tuned on brain embeddings (finetunes = False); "
                          "drop --finetune or choose a generator that can (`mindsight models`)")
    prior = (not finetune) if rc.prior is None else rc.prior
    if finetune and prior:
        raise ConfigError("--finetune conditions the generator on brain embeddings directly (AVDE's stage 2), "
                          "so it takes no diffusion prior; use --no-prior or --no-finetune")
    return replace(rc, finetune=finetune, prior=prior)


def _check_space(gen: Generator, image_model: str, run_dir: Path) -> None:
    if gen.embedding_model != image_model:
        raise DataFormatError(
            f"{run_dir}: the encoder predicts {image_model} embeddings but generator {gen.name!r} is "
            f"conditioned on {gen.embedding_model}; train with --image-model {gen.embedding_model} "
            "or choose a generator for this space (`mindsight models`)")


def reconstruct_run(run_dir: str | Path | Run, rc: ReconstructConfig | None = None, *,
                    out: str | Path | None = None, device: str = "cpu",
                    cache_dir: Any = None, score: bool = True) -> dict[str, Any]:
    """Fit stage I and the low-level pathway on the fold's training data, reconstruct its test
    images, score them (with the upper bound and chance), write the outputs; return the JSON.
    An open :class:`~mindsight.run.Run` may be given instead of a folder (its device and cache
    are used)."""
    run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir, device=device, cache_dir=cache_dir)
    return _reconstruct(run, rc or ReconstructConfig(), out, score)


def _reconstruct(run: Run, rc: ReconstructConfig, out: str | Path | None, score: bool) -> dict[str, Any]:
    from mindsight.train.data import trial_tensors

    run_dir, cfg, device = run.path, run.config, run.device
    fold = run.fold(rc.fold)
    fold_dir, _ = run.trained(fold)
    gen = load_generator(rc.generator, device=device, **rc.generator_options)
    _check_space(gen, cfg.model.image_model, run_dir)
    rc = resolve_conditioning(rc, gen)
    out = Path(out) if out is not None else run_dir / "reconstruction" / rc.generator
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    images = run.images
    sharp = [f"{cfg.model.image_model}@sharp"]  # the space of the prior and the generator
    train_feats = run.features("train", sharp)[0]
    test_feats = run.features("test", sharp)[0]
    model = run.model(fold)
    if not model.spec.modalities and (model.spec.image_side != "fixed" or len(model.spec.level_list()) > 1):
        logger.warning("%s: the model aligns with %s targets of %d feature levels, not with the sharp "
                       "%s features the prior and generator are conditioned on; reconstructions use its "
                       "embeddings as if they were (train a model with model.image_side: fixed for the "
                       "generator's space)", fold_dir, model.spec.image_side, len(model.spec.level_list()),
                       cfg.model.image_model)
    head = "mse" if model.two_heads else "clip"  # Benchetrit et al. generate from the MSE head

    def scaled(epochs: torch.Tensor) -> torch.Tensor:
        """Epochs as the model reads them: through its input scaler (the low-level pathway too)."""
        with torch.no_grad():
            return model.scaler(epochs.to(device))

    # ---- training data of this fold: averaged trials, the same validation concepts as training
    rec = run.training(fold)
    train_rec, val_rec = rec.split_validation(cfg.data.val_fraction, seed=fold.seed,
                                              by=cfg.data.val_split)
    train_t = trial_tensors(train_rec.average_repetitions(), len(train_feats))
    val_t = trial_tensors(val_rec.average_repetitions(), len(train_feats))
    feats = torch.from_numpy(train_feats.features)
    conds = conditionings(model, head, *_caption_texts(run, model))
    multi = len(conds) > 1

    lowlevel = None
    low_info: dict[str, Any] | None = None
    if rc.lowlevel:
        t0 = time.perf_counter()
        key = _fingerprint({"generator": gen.describe()["latent_shape"], "name": rc.generator,
                            "options": rc.generator_options, "fold": fold.name,
                            "scaler": model.spec.scaler})
        path = fold_dir / f"lowlevel-{rc.generator}-{key}.safetensors"
        if path.is_file():
            lowlevel, meta = LowLevelDecoder.load(path, device)
            low_info = meta["info"]
        else:
            paths = images["train"].paths  # the autoencoder resizes the 256 px images to its own size
            latents = torch.cat([gen.autoencoder.encode(load_images(paths[i : i + 256]).to(device)).cpu()
                                 for i in range(0, len(paths), 256)])
            lowlevel = LowLevelDecoder(rec.n_chans, rec.n_times, rec.sfreq, gen.autoencoder.latent_shape,
                                       device=device)
            low_info = lowlevel.fit(scaled(train_t.x), latents[train_t.image], scaled(val_t.x),
                                    latents[val_t.image])
            lowlevel.save(path, {"info": low_info})
        timings["lowlevel_fit_s"] = time.perf_counter() - t0

    # ---- the test set, once
    test_rec = run.recording(fold.test_subject, "test")
    test_t = trial_tensors(test_rec.average_repetitions(), len(test_feats))
    order = torch.argsort(test_t.image)
    if rc.max_images is not None:
        order = order[: rc.max_images]
    x, subj, idx = test_t.x[order], test_t.subject[order], test_t.image[order]
    paths = [images["test"].paths[i] for i in idx.tolist()]
    names = [p.stem for p in paths]

    true_emb = torch.from_numpy(test_feats.features)[idx]
    # the upper bound comes first: with stage 2 it is the generator before fine-tuning
    upper = gen.generate(true_emb, strength=1.0, guidance_scale=rc.guidance_scale, steps=rc.steps, seed=rc.seed)
    all_test = torch.from_numpy(test_feats.features)

    def cos(a: torch.Tensor) -> float:
        return float(torch.nn.functional.cosine_similarity(a.cpu().float(), true_emb.float()).mean())

    def top1(a: torch.Tensor) -> float:
        return float((_top5(a, all_test)[:, 0] == idx).float().mean())

    generated: dict[str, torch.Tensor] = {}
    per_cond: dict[str, dict[str, Any]] = {}
    for cond in conds:
        # a comparison's second conditioning gets its own cached fits (the first keeps the old keys)
        tag = {} if cond.name == "reconstructed" else {"conditioning": cond.name}
        embedded: dict[str, torch.Tensor] = {}

        def brain_embeddings(cond: Conditioning = cond, embedded: dict = embedded) -> tuple[torch.Tensor, torch.Tensor]:
            """The frozen brain embeddings of the training and validation trials (computed once)."""
            if not embedded:
                embedded["train"] = cond.embed(train_t.x, train_t.subject)
                embedded["val"] = cond.embed(val_t.x, val_t.subject)
            return embedded["train"], embedded["val"]

        prior, prior_info = None, None
        if rc.prior:
            t0 = time.perf_counter()
            fitting = {k: v for k, v in rc.prior_config.to_dict().items() if k not in ("steps", "guidance_scale")}
            key = _fingerprint({"cfg": fitting, "fold": fold.name, "seed": rc.seed,
                                "version": PRIOR_VERSION, **tag})
            path = fold_dir / f"prior-{key}.safetensors"
            if path.is_file():  # fitted before; sampling settings come from this job's config
                prior, meta = DiffusionPrior.load(path, device)
                prior.cfg = rc.prior_config
                prior_info = meta["info"]
            else:
                tr_emb, va_emb = brain_embeddings()
                prior = DiffusionPrior(train_feats.dim, tr_emb.shape[1], rc.prior_config, device)
                prior_info = prior.fit(tr_emb, feats[train_t.image], va_emb, feats[val_t.image],
                                       seed=rc.seed)
                prior.save(path, {"info": prior_info})
            timings[_timing("prior_fit_s", cond)] = time.perf_counter() - t0

        brain_emb = cond.embed(x, subj)
        captions = cond.captions(x, subj) if cond.captions is not None else None
        finetune_info: dict[str, Any] | None = None
        cond_emb = brain_emb
        if rc.finetune:
            t0 = time.perf_counter()
            tr_emb, va_emb = brain_embeddings()
            to_image_scale = _statistics_map(tr_emb, feats[train_t.image], rc.finetune_config.match_statistics)
            finetune_info = _finetuned(gen, rc, fold_dir, fold.name, head, to_image_scale(tr_emb), train_t.image,
                                       to_image_scale(va_emb), val_t.image, images["train"].paths, tag)
            cond_emb = to_image_scale(brain_emb)
            timings[_timing("finetune_s", cond)] = time.perf_counter() - t0
        elif multi and not rc.prior:  # a comparison without a prior: both mapped to the image scale alike
            tr_emb, _ = brain_embeddings()
            cond_emb = _statistics_map(tr_emb, feats[train_t.image], True)(brain_emb)

        pipe = ReconstructionPipeline(gen, prior, lowlevel, strength=rc.strength, guidance_scale=rc.guidance_scale,
                                      steps=rc.steps, postprocess=rc.postprocess)
        t0 = time.perf_counter()
        result = pipe(cond_emb, scaled(x), captions=captions, seed=rc.seed)
        timings[_timing("reconstruct_s", cond)] = time.perf_counter() - t0
        timings[_timing("per_image_s", cond)] = timings[_timing("reconstruct_s", cond)] / len(names)
        generated[cond.name] = result.images
        per_cond[cond.name] = {
            "conditioning": _conditioning(rc, head, cond, multi),
            "prior": None if prior is None else {**prior_info, "parameters": prior.n_parameters()},
            "finetune": finetune_info,
            "embedding_cosine": {"brain": cos(brain_emb), "prior": cos(result.embeddings)},
            "embedding_top1": {"brain": top1(brain_emb), "prior": top1(result.embeddings), "n_way": len(all_test)},
            "captions": captions,
        }
        if cond is conds[0]:  # the grid, the blurry images and the retrievals are the first's
            first_result, first_emb = result, brain_emb

    result, brain_emb = first_result, first_emb
    rng = np.random.default_rng(rc.seed)
    chance_paths = [images["train"].paths[i] for i in rng.choice(len(images["train"]), len(names), replace=False)]

    seen, chance = load_images(paths), load_images(chance_paths)  # 256 px, as the metrics see them
    save_images(seen, out / "seen", names)
    for name, imgs in generated.items():
        save_images(imgs, out / name, names)
    save_images(upper, out / "upper_bound", names)
    save_images(chance, out / "chance", names)
    if result.blurry is not None:
        save_images(result.blurry, out / "blurry", names)

    # embedding-space check of stage I: closer to the true embeddings (cosine), and still
    # identifying the right image among the test images (top-1)?
    first = per_cond[conds[0].name]
    report: dict[str, Any] = {
        "run_dir": str(run_dir), "output": str(out), "fold": fold.name, "brain_head": head, "n_images": len(names),
        "config": rc.to_dict(), "generator": gen.describe(),
        "prior": first["prior"], "finetune": first["finetune"], "conditioning": first["conditioning"],
        "lowlevel": None if lowlevel is None else {**low_info, "parameters": lowlevel.n_parameters()},
        "embedding_cosine": first["embedding_cosine"], "embedding_top1": first["embedding_top1"],
        "timings": timings,
    }
    if multi:
        report["conditions"] = per_cond
    if score:
        from mindsight.evaluate.reconstruction import reconstruction_metrics

        conditions = {**generated, "upper_bound": upper, "chance": chance}
        if result.blurry is not None:
            conditions["blurry"] = result.blurry
        report["metrics"] = {}
        seen_features: dict[str, Any] = {}  # the seen images' features, extracted once
        for cond_name, imgs in conditions.items():
            logger.info("scoring %s (%d images)", cond_name, len(names))
            report["metrics"][cond_name] = reconstruction_metrics(seen, imgs, device=device,
                                                                  seen_features=seen_features)
    top5 = _top5(brain_emb, all_test).tolist()
    from mindsight.generate.figures import plot_reconstructions

    plot_reconstructions(out / "grid.png", paths, result, upper, [[images["test"].paths[j] for j in row] for row in top5],
                         n=rc.n_grid, others={k: v for k, v in generated.items() if k != "reconstructed"})
    timings["total_s"] = time.perf_counter() - t_start
    report["protocol"] = {
        "fitted_on": "the fold's training images (prior, low-level decoder, stage-2 fine-tuning); "
                     "validation concepts select them",
        "test": "repetition-averaged test EEG, read once", "chance": "random training images",
        "upper_bound": "the generator given each test image's true embedding"
                       + (" (before stage-2 fine-tuning: the generator trained on image embeddings)"
                          if rc.finetune else ""),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if multi:
        report["protocol"]["comparison"] = ("multimodal (reconstructed) against image-only conditioning: the same "
                                            "fold, test trials, low-level pathway, generator and seed")
    write_json(out / "reconstruction.json", report)
    return report


def _timing(key: str, cond: Conditioning) -> str:
    return key if cond.name == "reconstructed" else f"{cond.name}_{key}"


def _caption_texts(run: Run, model: Any) -> tuple[tuple[str, ...] | None, torch.Tensor | None]:
    """The training concept names and their embeddings in the text head's space, the captions a
    multimodal model's text head chooses from (None when it has no text head or no features)."""
    from mindsight.embed.features import optional_text_features

    if "text" not in model.spec.modalities or not model.spec.text_model:
        return None, None
    names = run.images["train"].concept_names
    table, reason = optional_text_features(names, model.spec.text_model, cache_dir=run.cache_dir, device="cpu")
    if table is None:
        logger.info("%s: no captions for the multimodal conditioning", reason)
        return None, None
    return names, torch.from_numpy(table.features)


def _conditioning(rc: ReconstructConfig, head: str, cond: Conditioning | None = None,
                  multi: bool = False) -> str:
    """What conditioned the generator, in words (reconstruction.json)."""
    if cond is not None and multi:
        how = ("through the generator's condition map fine-tuned on the fold's training trials" if rc.finetune
               else "through a diffusion prior fitted on them" if rc.prior
               else "mapped per dimension to the training image embeddings' mean and std")
        return f"{cond.description}, {how}"
    if rc.finetune:
        scale = (", mapped per dimension to the training image embeddings' mean and std"
                 if rc.finetune_config.match_statistics else "")
        return (f"the brain embeddings ({head} head){scale}, through the generator's condition map fine-tuned "
                f"on the fold's training trials (AVDE's stage 2, trained part: {rc.finetune_config.train})")
    if rc.prior:
        return f"image embeddings sampled by the diffusion prior from the brain embeddings ({head} head)"
    return f"the brain embeddings ({head} head) as image embeddings"


def _statistics_map(brain: torch.Tensor, image: torch.Tensor, on: bool) -> Any:
    """Brain embeddings → the image embeddings' per-dimension mean and std (fitted on the training
    trials), or unchanged: the start of stage 2 then sees inputs of the scale it was trained on."""
    if not on:
        return lambda e: e.float()
    b_mean, b_std = brain.float().mean(0).cpu(), brain.float().std(0).clamp_min(1e-6).cpu()
    i_mean, i_std = image.float().mean(0).cpu(), image.float().std(0).cpu()
    return lambda e: (e.float().cpu() - b_mean) / b_std * i_std + i_mean


def _finetuned(gen: Generator, rc: ReconstructConfig, fold_dir: Path, fold: str, head: str,
               train_cond: torch.Tensor, train_image: torch.Tensor, val_cond: torch.Tensor,
               val_image: torch.Tensor, paths: list[Path], tag: dict[str, str] | None = None) -> dict[str, Any]:
    """Fine-tune ``gen`` on the fold's training pairs (validation concepts select the epoch), or
    load the result of an earlier identical job (``finetune-<generator>-<key>.safetensors``)."""
    from mindsight.evaluate.reconstruction import resize_square
    from mindsight.train.checkpoint import load_tensors, save_tensors

    key = _fingerprint({"cfg": rc.finetune_config.to_dict(), "fold": fold, "seed": rc.seed, "head": head,
                        "generator": rc.generator, "options": rc.generator_options,
                        "weights": gen.describe().get("training"), "version": FINETUNE_VERSION,
                        **(tag or {})})
    path = fold_dir / f"finetune-{rc.generator}-{key}.safetensors"
    if path.is_file():
        tensors, meta = load_tensors(path)
        gen.load_finetuned_state(tensors, meta["info"])
        return meta["info"]
    used = sorted(set(train_image.tolist()) | set(val_image.tolist()))
    pictures = torch.zeros(len(paths), 3, gen.image_size, gen.image_size)  # only the used rows are filled
    for start in range(0, len(used), 256):
        rows = used[start : start + 256]
        pictures[rows] = resize_square(load_images([paths[i] for i in rows]), gen.image_size).clamp(0, 1)
    info = gen.finetune(train_cond, pictures[train_image], val_cond, pictures[val_image],
                        config=rc.finetune_config, seed=rc.seed)
    save_tensors(path, gen.finetuned_state(), {"info": info})
    return info


def _top5(emb: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Indices of the 5 test images most similar (cosine) to each embedding."""
    from mindsight.evaluate.retrieval import similarity

    return torch.topk(similarity(emb.cpu().float(), feats.cpu().float()), 5, dim=1).indices
