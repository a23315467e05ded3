"""The ``mindsight`` command line: parse, call the Python API, print.

Every command has ``--help``. Errors about the user's input (missing files, wrong layouts, bad
names) print one clear line and exit with status 2 instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from mindsight.config import PROTOCOLS, TEST_SETS, TRIAL_MODES
from mindsight.errors import MindsightError
from mindsight.output import logger, progress_scope, set_progress
from mindsight.preprocess.pipeline import VARIANTS
from mindsight.simulate.dataset import DIFFICULTY, PRESETS

if TYPE_CHECKING:
    from mindsight.analysis.base import Analysis, Summary

app = typer.Typer(
    name="mindsight",
    help="Decode what a person sees from EEG/MEG: data, embeddings, training, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def _choices(name: str, values: Any) -> type[StrEnum]:
    """A string enum of ``values`` (a constant or a registry's names), so that ``--help`` lists
    them and the parser refuses anything else."""
    return StrEnum(name, [(str(v), str(v)) for v in values])


DEVICES = ("auto", "cpu", "cuda")
MVNN_CHOICES = ("time", "epochs", "none")
Device = _choices("Device", DEVICES)
Variant = _choices("Variant", VARIANTS)
Mvnn = _choices("Mvnn", MVNN_CHOICES)
Protocol = _choices("Protocol", PROTOCOLS)
Trials = _choices("Trials", TRIAL_MODES)
TestSet = _choices("TestSet", TEST_SETS)
Preset = _choices("Preset", PRESETS)
Difficulty = _choices("Difficulty", DIFFICULTY)
GeneratorKind = _choices("GeneratorKind", ("diffusion", "var"))
FinetunePart = _choices("FinetunePart", ("all", "condition"))  # mindsight.generate.finetune.TRAINED_PARTS


def _progress_option(value: bool | None) -> bool | None:
    """``--progress`` / ``--no-progress``: the global switch of every bar (absent: unchanged)."""
    if value is not None:
        set_progress(value)
    return value


# shared options: one definition each, used by every command that has them
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", envvar="MINDSIGHT_CACHE_DIR",
                 help="Where converted EEG arrays and features are cached \\[default: ~/.cache/mindsight]."),
]
DeviceOption = Annotated[Device, typer.Option(help="Where to compute: cuda when available with auto.")]
ConfigDevice = Annotated[Device | None, typer.Option("--device", help="Where to compute \\[the configuration's: auto].")]
RunDir = Annotated[Path, typer.Argument(help="A run directory written by `mindsight train`.")]
Progress = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", callback=_progress_option,
    help="Show progress bars \\[shown unless --quiet or MINDSIGHT_PROGRESS=0].")]
Subjects = Annotated[list[int] | None, typer.Option(
    "--subject", "-s",
    help="Subject number(s); repeat for several \\[all found; train: the configuration's; simulate: the preset's].")]
Seed = Annotated[int, typer.Option(help="Random seed: the same seed gives the same result.")]
OptionalSeed = Annotated[int | None, typer.Option("--seed", help="Random seed \\[the preset's or variant's].")]


@contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """For one command: with ``quiet`` no progress bars and no notes below warnings; the
    previous settings come back when the command ends."""
    level = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        with progress_scope(not quiet):
            yield
    finally:
        logger.setLevel(level)


@app.callback()
def _global_options(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Hide progress bars and notes (warnings and errors still show).")] = False,
) -> None:
    """Decode what a person sees from EEG/MEG: data, embeddings, training, evaluation."""
    ctx.with_resource(_quiet(quiet))


def _table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False, title_justify="left")
    for c in columns:
        table.add_column(c, overflow="fold")  # wrap long paths instead of cutting them
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    return table


def _value(choice: StrEnum | None) -> str | None:
    return None if choice is None else choice.value


@app.command()
def info(
    paths: Annotated[list[Path], typer.Argument(help="Dataset folders or files to describe.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Describe the EEG/MEG data, image sets and feature files found under PATHS."""
    from mindsight.io.layouts import describe

    findings = [f for p in paths for f in describe(p)]
    if as_json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
        return
    for f in findings:
        console.print(f"[bold]{f.root}[/bold]")
        console.print(f"  layout: [cyan]{f.layout}[/cyan] — {f.description}")
        if f.subjects:
            console.print(f"  subjects: {', '.join(f'sub-{s:02d}' for s in f.subjects)} ({len(f.subjects)})")
        columns = {
            "preprocessed": ["subject", "partition", "shape", "n_chans", "sfreq", "tmin", "tmax", "images", "concepts", "dtype"],
            "raw": ["subject", "session", "partition", "n_chans", "n_samples", "sfreq", "duration_s"],
            "images": ["partition", "images", "concepts", "exemplars_per_concept", "first"],
            "features": ["source", "model", "partition", "shape", "file"],
        }[f.kind]
        console.print(_table(f.rows, columns))
        for note in dict.fromkeys(r["note"] for r in f.rows if r.get("note")):
            console.print(f"  [yellow]note:[/yellow] {escape(note)}", highlight=False)


@app.command()
def cache(
    eeg: Annotated[Path, typer.Argument(help="A dataset folder or file, any registered dataset and layout (see `mindsight info`).")],
    subject: Subjects = None,
    images: Annotated[Path | None, typer.Option(help="Image set, to join concepts and check counts.")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Convert a dataset's EEG/MEG to the float32 memory-mapped cache now (else done on first use)."""
    from mindsight.io.datasets import dataset_for
    from mindsight.recording import PARTITIONS

    dataset = dataset_for(eeg)
    image_set = None if images is None else dataset.images(eeg, images)
    for s in subject or dataset.subjects(eeg):
        for partition in PARTITIONS:
            console.print(repr(dataset.read(eeg, s, partition, image_set, cache_dir=cache_dir)))


@app.command()
def preprocess(
    raw: Annotated[Path, typer.Argument(help="THINGS-EEG2 raw release (folder holding raw_data/ or sub-XX/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (gets sub-XX/ per subject).")],
    subject: Subjects = None,
    variant: Annotated[Variant, typer.Option(help="official: 17 ch, 100 Hz; nice-atm: 63 ch, 250 Hz.")] = Variant.official,
    mvnn: Annotated[Mvnn | None, typer.Option(help="MVNN dimension \\[the variant's: time for official, epochs for nice-atm].")] = None,
    reps_train: Annotated[int | None, typer.Option(help="Training repetitions kept per session.")] = None,
    reps_test: Annotated[int | None, typer.Option(help="Test repetitions kept per session.")] = None,
    seed: OptionalSeed = None,
    overwrite: Annotated[bool, typer.Option(help="Redo subjects whose output exists.")] = False,
) -> None:
    """Preprocess the raw release with MNE, reproducing the official or the NICE/ATM pipeline."""
    from mindsight.io.things_eeg2 import find_raw_sessions
    from mindsight.preprocess import preprocess_subject

    cfg = VARIANTS[variant.value]
    overrides: dict[str, Any] = {}
    if mvnn is not None:
        overrides["mvnn"] = None if mvnn == "none" else mvnn.value
    if reps_train is not None or reps_test is not None:
        overrides["reps_per_session"] = {
            "train": reps_train or cfg.reps_per_session["train"],
            "test": reps_test or cfg.reps_per_session["test"],
        }
    if seed is not None:
        overrides["seed"] = seed
    cfg = cfg.with_overrides(**overrides)
    subjects = subject or sorted(find_raw_sessions(raw))
    if not subjects:
        raise MindsightError(f"{raw}: no raw THINGS-EEG2 sessions found (raw_data/sub-XX/ses-0Y/raw_eeg_*.npy)")
    for s in subjects:
        preprocess_subject(raw, s, out, cfg, overwrite=overwrite)


@app.command()
def embed(
    images: Annotated[Path, typer.Option(help="Image set (training_images/, test_images/, image_metadata.npy).")],
    image_model: Annotated[str | None, typer.Option(help="Image embedder; see `mindsight models`.")] = None,
    text_model: Annotated[str | None, typer.Option(help="Text embedder for concept names.")] = None,
    template: Annotated[str | None, typer.Option(help="Prompt for concept names, '{}' = the name.")] = None,
    device: DeviceOption = Device.auto,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch.")] = None,
    view: Annotated[list[str] | None, typer.Option(help="Image view(s) the model is shown (repeatable; stacks such as multi-blur expand); see `mindsight models`.")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Extract (or find cached) image and concept-name embeddings for both partitions."""
    from mindsight.embed import (
        DEFAULT_IMAGE_MODEL,
        DEFAULT_TEMPLATE,
        DEFAULT_TEXT_MODEL,
        image_features,
        text_features,
    )
    from mindsight.embed.base import resolve_device
    from mindsight.embed.features import cache_path
    from mindsight.embed.views import canonical, expand_views
    from mindsight.io import read_image_set

    views = expand_views(view or ["sharp"])
    image_set = read_image_set(images)
    image_model = image_model or DEFAULT_IMAGE_MODEL
    text_model = text_model or DEFAULT_TEXT_MODEL
    device = resolve_device(device.value)
    rows = []
    for part in ("train", "test"):
        p = image_set[part]
        for v in views:
            t = image_features(p, image_model, cache_dir=cache_dir, device=device, batch_size=batch_size, view=v)
            rows.append({"partition": part, "modality": "image", "model": f"{image_model}@{v}",
                         "shape": t.features.shape, "file": cache_path(image_model, "image", t.fingerprint, cache_dir, canonical(v))})
        tt = text_features(p.concept_names, text_model, template or DEFAULT_TEMPLATE, cache_dir=cache_dir, device=device)
        rows.append({"partition": part, "modality": "text", "model": text_model, "shape": tt.features.shape,
                     "file": cache_path(text_model, "text", tt.fingerprint, cache_dir)})
    console.print(_table(rows, ["partition", "modality", "model", "shape", "file"]))


@app.command("import-features")
def import_features_cmd(
    files: Annotated[list[Path], typer.Argument(help="ATM .pt, NICE .npy or things-eeg2-dataset .safetensors files.")],
    images: Annotated[Path, typer.Option(help="The image set these features were computed on.")],
    model: Annotated[str | None, typer.Option(help="Store under this model name (default: from the file name).")] = None,
    view: Annotated[str, typer.Option(help="The image view the features were computed through (e.g. gauss-k21); see `mindsight models`.")] = "sharp",
    cache_dir: CacheDir = None,
) -> None:
    """Import feature files of ATM, NICE or things-eeg2-dataset into the feature cache."""
    from mindsight.embed.anchors import import_features
    from mindsight.io import read_image_set

    image_set = read_image_set(images)
    rows = []
    for f in files:
        for table, path in import_features(f, image_set, model=model, cache_dir=cache_dir, view=view):
            rows.append({"file": f.name, "model": table.model, "modality": table.modality,
                         "shape": table.features.shape, "cached as": path})
    console.print(_table(rows, ["file", "model", "modality", "shape", "cached as"]))


@app.command()
def models() -> None:
    """List every registry: embedders, image views, modalities and image sides, brain encoders,
    generators, datasets and analyses (CONTRIBUTING.md: how to add one)."""
    from mindsight.embed import EMBEDDERS
    from mindsight.encoders import ENCODERS, build_encoder, count_parameters
    from mindsight.io.things_eeg2 import CH_NAMES_63

    rows = [{"name": e.name, "modality": e.tags["modality"], "dim": e.tags["dim"],
             "offline": "yes" if e.tags["offline"] else "needs hub", "description": e.description}
            for e in EMBEDDERS]
    console.print(_table(rows, ["name", "modality", "dim", "offline", "description"], title="embedders"))
    from mindsight.embed.views import STACKS, view_names
    from mindsight.train.image_side import IMAGE_SIDES

    rows = [{"view": v, "shows the image model": ""} for v in view_names()]
    rows += [{"view": k, "shows the image model": f"stack: {', '.join(v)}"} for k, v in STACKS.items()]
    console.print(_table(rows, ["view", "shows the image model"], title="image views (model.image_views)"))
    from mindsight.embed.modalities import modality_rows

    console.print(_table(modality_rows(), ["name", "kind", "levels", "description"],
                         title="modalities (model.modalities; im: image model, tm: text model)"))
    rows = [{"name": e.name, "learned": "yes" if e.factory.learned else "no", "description": e.description}
            for e in IMAGE_SIDES]
    console.print(_table(rows, ["name", "learned", "description"], title="image sides (model.image_side)"))
    capabilities = ("closed_form", "needs_ch_names", "subject_layers", "two_heads")
    rows = []
    for e in ENCODERS:
        cls = e.factory
        extra = {"ch_names": CH_NAMES_63} if cls.needs_ch_names else {}
        n = count_parameters(build_encoder(e.name, n_chans=63, n_times=250, sfreq=250, n_outputs=1024, **extra))
        rows.append({"name": e.name, "parameters": f"{n:,}", "description": e.description,
                     "capabilities": ", ".join(c for c in capabilities if getattr(cls, c)) or "–"})
    console.print(_table(rows, ["name", "parameters", "capabilities", "description"],
                         title="brain encoders (parameters for 63 ch × 250 samples → 1024-d)"))
    from mindsight.generate.base import GENERATORS, generator_class, generator_names, load_generator

    rows = []
    for name in generator_names():
        offline = generator_class(name).offline
        params = "–"
        if offline:
            try:
                params = f"{sum(load_generator(name).parameter_counts().values()):,}"
            except MindsightError as exc:
                params = f"unavailable: {exc}"
        rows.append({"name": name, "offline": "yes" if offline else "needs hub",
                     "parameters": params, "description": GENERATORS.entry(name).description})
    console.print(_table(rows, ["name", "offline", "parameters", "description"], title="image generators"))
    from mindsight.analysis import ANALYSES
    from mindsight.io.datasets import DATASETS

    rows = [{"name": e.name, "test sets": ", ".join(e.factory.test_sets),
             "layouts": ", ".join(e.factory.layouts), "description": e.factory.description} for e in DATASETS]
    console.print(_table(rows, ["name", "test sets", "layouts", "description"], title="datasets (mindsight info / --eeg)"))
    rows = [{"name": e.name, "description": e.factory.description} for e in ANALYSES]
    console.print(_table(rows, ["name", "description"], title="analyses (mindsight analyze NAME)"))


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create (or resume).")],
    eeg: Annotated[Path | None, typer.Option("--eeg", "--meg", help="Preprocessed THINGS-EEG2 or THINGS-MEG folder (any supported layout).")] = None,
    images: Annotated[Path | None, typer.Option(help="Image set (THINGS-EEG2 folders; for THINGS-MEG the folder holding images_meg/).")] = None,
    test_set: Annotated[TestSet | None, typer.Option(help="The dataset's test set (small = its default): THINGS-MEG small (200 images × 12) or large (2,400 images); EEG-ImageNet zero-shot (held-out classes) or per-image (the authors' split, shares classes: refused) \\[small].")] = None,
    subject: Subjects = None,
    encoder: Annotated[str | None, typer.Option(help="Brain encoder; see `mindsight models`.")] = None,
    image_model: Annotated[str | None, typer.Option(help="Image embedder \\[default: efficientnet-lite0, offline].")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs (early stopping on validation).")] = None,
    seed: Annotated[list[int] | None, typer.Option("--seed", help="Seed(s); repeat for several.")] = None,
    protocol: Annotated[Protocol | None, typer.Option(help="intra: per subject; loso: leave one subject out; pooled: one model for all subjects \\[intra].")] = None,
    trials: Annotated[Trials | None, typer.Option(help="Training samples: subsets (random repetition averages), averaged or single \\[subsets].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    device: ConfigDevice = None,
    config: Annotated[Path | None, typer.Option(help="YAML run configuration; flags override it.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any config value: section.key=value.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run in --out.")] = False,
    devices: Annotated[int, typer.Option(help="Processes on this node (torch.distributed: one per GPU, or gloo processes on the CPU); under torchrun, its processes.")] = 1,
    parallel: Annotated[str, typer.Option(help="With several processes: 'folds' (one fold per process), 'model' (each fold on all of them, DDP with the global batch's negatives) or 'auto'.")] = "auto",
    progress: Progress = None,
    cache_dir: CacheDir = None,
) -> None:
    """Train a brain encoder to the image-embedding space (contrastive + MSE), selecting on a
    validation split of training concepts. The test set is not read."""
    from mindsight.config import RunConfig
    from mindsight.train import train_run

    cfg = RunConfig.load(config) if config else RunConfig()
    flags = {
        "data.eeg": None if eeg is None else str(eeg),
        "data.images": None if images is None else str(images), "data.test_set": _value(test_set),
        "data.subjects": subject, "data.train_trials": _value(trials), "model.encoder": encoder,
        "model.image_model": image_model, "train.epochs": epochs, "train.seeds": seed,
        "train.batch_size": batch_size, "train.lr": lr, "train.device": _value(device),
        "protocol": _value(protocol),
    }
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None]
    cfg = cfg.override(overrides + list(set_ or []))
    if devices > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from mindsight.train.distributed import check_parallel, launch, train_worker

        check_parallel(parallel)
        args = (cfg.to_dict(), str(out), resume, None if cache_dir is None else str(cache_dir), parallel)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun: this is one worker
            train_worker(*args)
        else:
            launch(train_worker, devices, *args)
    else:
        train_run(cfg, out, resume=resume, cache_dir=cache_dir)
    console.print(f"trained {cfg.model.encoder} ({cfg.protocol}, subjects {cfg.data.subjects}, "
                  f"seeds {cfg.train.seeds}) → {out}\nnext: mindsight evaluate {out}")


@app.command()
def evaluate(
    run_dir: RunDir,
    device: DeviceOption = Device.auto,
    single_trial: Annotated[bool, typer.Option(help="Also score single test trials.")] = True,
    draws: Annotated[int, typer.Option(help="Random distractor draws per query for k-way accuracy.")] = 100,
    centres: Annotated[Path | None, typer.Option(help="THINGS image folder (one sub-folder per concept): also rank NICE's concept centres.")] = None,
    progress: Progress = None,
    cache_dir: CacheDir = None,
) -> None:
    """Score a run on the test set (zero-shot retrieval and classification) → RUN_DIR/metrics.json."""
    from mindsight.evaluate import evaluate_run
    from mindsight.evaluate.report import plot_repetitions, summary_tables

    metrics = evaluate_run(run_dir, device=device.value, cache_dir=cache_dir, single_trial=single_trial,
                           n_draws=draws, centres=centres)
    for title, columns, rows in summary_tables(metrics):
        console.print(_table(rows, columns, title=title))
    figure = plot_repetitions(metrics, run_dir / "repetitions.png")
    console.print(f"metrics → {run_dir / 'metrics.json'}; figure → {figure}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    preset: Annotated[Preset, typer.Option(help="Size and layout (things: the full THINGS-EEG2 scale; meg-*: THINGS-MEG; eeg-imagenet-*: an EEG-ImageNet release).")] = Preset.demo,
    difficulty: Annotated[Difficulty, typer.Option(help="Noise level.")] = Difficulty.default,
    subject: Subjects = None,
    seed: OptionalSeed = None,
    raw: Annotated[bool | None, typer.Option(help="Also write the raw 1000 Hz release (for `mindsight preprocess`).")] = None,
    front_end: Annotated[bool | None, typer.Option(
        "--front-end/--no-front-end",
        help="Perceptual front-end: mid/high features of a foveated blur, one acuity level drawn per trial \\[on].")] = None,
    device: DeviceOption = Device.auto,
    progress: Progress = None,
    cache_dir: CacheDir = None,
) -> None:
    """Write a THINGS-EEG2-like dataset (images, preprocessed and raw EEG) with a known ceiling."""
    from mindsight.embed.base import resolve_device
    from mindsight.simulate import preset as make_preset
    from mindsight.simulate import simulate as run_simulation

    cfg = make_preset(preset.value, difficulty.value, subjects=subject, seed=seed, front_end=front_end)
    if raw is not None:
        cfg.layouts = sorted(set(cfg.layouts) | {"raw"}) if raw else [x for x in cfg.layouts if x != "raw"]
    meta = run_simulation(out, cfg, device=resolve_device(device.value), cache_dir=cache_dir)
    console.print(f"simulated {len(cfg.subjects)} subject(s) → {out}: {meta['n_way']}-way ideal-observer "
                  f"ceiling top-1 {100 * meta['ceiling_top1']:.1f} %, top-5 {100 * meta['ceiling_top5']:.1f} %")
    eeg, images = ((f"{out}/EEG-ImageNet/EEG-ImageNet.pth", f"{out}/imagenet") if "eeg-imagenet" in cfg.layouts
                   else (f"{out}/Preprocessed_data_250Hz", f"{out}/images"))
    console.print(f"train on it: mindsight train --eeg {eeg} --images {images} --subject 1 --encoder atm --out runs/sim")


@app.command()
def reconstruct(
    run_dir: RunDir,
    generator: Annotated[str, typer.Option(help="Stage II generator; see `mindsight models`.")] = "builtin",
    out: Annotated[Path | None, typer.Option(help="Output folder [RUN_DIR/reconstruction/GENERATOR].")] = None,
    fold: Annotated[str | None, typer.Option(help="Fold to reconstruct, e.g. sub-01_seed-0 \\[first].")] = None,
    prior: Annotated[bool | None, typer.Option("--prior/--no-prior", help="Stage I diffusion prior (else the EEG embedding conditions directly) \\[on unless --finetune].", show_default=False)] = None,
    finetune: Annotated[bool | None, typer.Option("--finetune/--no-finetune", help="AVDE's stage 2: fine-tune the generator's condition map on the fold's (EEG embedding, image) training pairs \\[on for generators that can, e.g. builtin-var].", show_default=False)] = None,
    finetune_train: Annotated[FinetunePart | None, typer.Option(help="Stage 2 trains 'all' (the transformer, as AVDE) or 'condition' (the condition map only) \\[all].")] = None,
    finetune_epochs: Annotated[int | None, typer.Option(help="Stage 2 epochs at most (validation concepts stop it early) \\[20].")] = None,
    finetune_lr: Annotated[float | None, typer.Option(help="Stage 2 learning rate \\[1e-4].")] = None,
    lowlevel: Annotated[bool, typer.Option(help="Low-level pathway: blurry image from EEG → img2img.")] = True,
    postprocess: Annotated[bool, typer.Option(help="Re-standardise predicted latents to training statistics.")] = False,
    strength: Annotated[float, typer.Option(help="img2img strength (1 = ignore the blurry image).")] = 0.8,
    steps: Annotated[int | None, typer.Option(help="Generator sampling steps \\[generator's default].")] = None,
    guidance: Annotated[float | None, typer.Option(help="Generator guidance scale \\[generator's default].")] = None,
    prior_steps: Annotated[int | None, typer.Option(help="Prior sampling steps [50].")] = None,
    prior_guidance: Annotated[float | None, typer.Option(help="Prior classifier-free guidance scale [3].")] = None,
    weights: Annotated[Path | None, typer.Option(help="Generator weights: the file, folder or hub id the generator declares (builtin: .safetensors; sdxl: pipeline id or folder).")] = None,
    max_images: Annotated[int | None, typer.Option(help="Only the first N test items.")] = None,
    seed: Seed = 0,
    device: DeviceOption = Device.auto,
    progress: Progress = None,
    cache_dir: CacheDir = None,
) -> None:
    """Reconstruct the test images of a run (prior → low-level → generator) and score them."""
    from mindsight.embed.base import resolve_device
    from mindsight.generate.base import weights_options
    from mindsight.generate.finetune import FinetuneConfig
    from mindsight.generate.reconstruct import ReconstructConfig, reconstruct_run

    tuned = {k: v for k, v in (("train", _value(finetune_train)), ("epochs", finetune_epochs), ("lr", finetune_lr))
             if v is not None}
    rc = ReconstructConfig(generator=generator, fold=fold, prior=prior, lowlevel=lowlevel,
                           postprocess=postprocess, strength=strength, steps=steps, guidance_scale=guidance,
                           seed=seed, max_images=max_images, finetune=finetune,
                           finetune_config=FinetuneConfig(**tuned))
    if prior_steps is not None:
        rc.prior_config.steps = prior_steps
    if prior_guidance is not None:
        rc.prior_config.guidance_scale = prior_guidance
    rc.generator_options.update(weights_options(generator, None if weights is None else str(weights)))
    dest = out or run_dir / "reconstruction" / generator
    rep = reconstruct_run(run_dir, rc, out=dest, device=resolve_device(device.value), cache_dir=cache_dir)
    from mindsight.generate.figures import METRIC_LABELS

    metrics = rep.get("metrics", {})
    rows = [{"metric": lab, **{c: ("–" if m.get(k) is None else f"{m[k]:.3f}") for c, m in metrics.items()}}
            for k, lab in METRIC_LABELS]
    console.print(_table(rows, ["metric", *metrics],
                         title=f"reconstruction metrics ({rep['n_images']} test images, {generator}; "
                               "– = backbone weights not available, see reconstruction.json)"))
    console.print(f"images, grid and reconstruction.json → {dest}")


@app.command("train-generator")
def train_generator(
    out: Annotated[Path | None, typer.Option(help="Work folder (rendered set, resumable checkpoint, result) \\[runs/generator; --kind var: runs/generator-var].", show_default=False)] = None,
    kind: Annotated[GeneratorKind, typer.Option(help="diffusion: the `builtin` generator; var: `builtin-var` (VAR).")] = GeneratorKind.diffusion,
    ae_steps: Annotated[int | None, typer.Option(help="Autoencoder training steps (diffusion).")] = None,
    diffusion_steps: Annotated[int | None, typer.Option(help="Latent diffusion training steps (diffusion).")] = None,
    tokenizer_steps: Annotated[int | None, typer.Option(help="VQ tokenizer training steps (var) \\[800].")] = None,
    var_steps: Annotated[int | None, typer.Option(help="VAR transformer training steps (var) \\[1800].")] = None,
    exemplars: Annotated[int | None, typer.Option(help="Pictures per concept.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (var: of the transformer; the tokenizer's is half).")] = None,
    device: DeviceOption = Device.auto,
    install: Annotated[bool, typer.Option(help="Copy the result over the packaged weights.")] = False,
    devices: Annotated[int, typer.Option(help="Processes (torch.distributed): each trains on its shard of a global batch of N × --batch-size.")] = 1,
    progress: Progress = None,
) -> None:
    """Train an offline generator from scratch on rendered stimuli (resumes an interrupted run)."""
    import shutil

    from mindsight.embed.base import resolve_device

    dev = resolve_device(device.value)
    if _value(kind) == "var":
        from mindsight.generate.generators.builtin_var import shipped_var_weights as shipped
        from mindsight.generate.train_var import VarTrainConfig
        from mindsight.generate.train_var import train_var as train

        cfg = VarTrainConfig()
        for key, val in (("tokenizer_steps", tokenizer_steps), ("var_steps", var_steps), ("exemplars", exemplars),
                         ("var_batch_size", batch_size),
                         ("tokenizer_batch_size", None if batch_size is None else max(1, batch_size // 2))):
            if val is not None:
                setattr(cfg, key, val)
        work, name, rendering = out or Path("runs/generator-var"), "builtin-var", cfg.rendering()
    else:
        from mindsight.generate.generators.builtin import shipped_weights as shipped
        from mindsight.generate.train_builtin import GeneratorTrainConfig
        from mindsight.generate.train_builtin import train_builtin as train

        cfg = GeneratorTrainConfig()
        for key, val in (("ae_steps", ae_steps), ("diffusion_steps", diffusion_steps),
                         ("exemplars", exemplars), ("batch_size", batch_size)):
            if val is not None:
                setattr(cfg, key, val)
        work, name, rendering = out or Path("runs/generator"), "builtin", cfg
    if devices > 1:
        from mindsight.generate.train_builtin import build_training_set
        from mindsight.train.distributed import generator_worker, launch

        work.mkdir(parents=True, exist_ok=True)
        build_training_set(work, rendering, dev)  # rendered once, before the processes start
        launch(generator_worker, devices, _value(kind), str(work), cfg.to_dict(), True)
        path = work / f"{name}.safetensors"
    else:
        path = train(work, cfg, device=dev)
    if install:
        shutil.copyfile(path, shipped())
    console.print(f"generator weights → {path}" + (f" (installed as {shipped()})" if install else
                                                    f"\nuse them: mindsight reconstruct RUN_DIR --generator {name} "
                                                    f"--weights {path}"))


def _print_summary(summary: Summary) -> None:
    if summary.rows:
        console.print(_table(summary.rows, summary.columns, title=summary.title))
    elif summary.title:
        console.print(summary.title)
    for line in summary.lines:
        console.print(line)


def analysis_command(cls: type[Analysis]) -> click.Command:
    """The ``mindsight analyze NAME`` command of analysis class ``cls``: RUN_DIR, one option per
    field of ``cls.Options`` (its type, default and ``metadata["help"]``), then the options every
    analysis has (device, progress, cache dir). It runs the analysis and prints its summary."""
    hints = cls.option_types()
    fields = dataclasses.fields(cls.Options)

    def parameter(name: str, annotation: Any, default: Any = inspect.Parameter.empty) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)

    params = [parameter("run_dir", RunDir)]
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        params.append(parameter(f.name, Annotated[hints[f.name], typer.Option(help=escape(f.metadata.get("help", "")))],
                                default))
    params += [parameter("device", DeviceOption, Device.auto), parameter("progress", Progress, None),
               parameter("cache_dir", CacheDir, None)]

    def command(**kwargs: Any) -> None:
        from mindsight.run import Run

        run = Run.open(kwargs["run_dir"], device=kwargs["device"].value, cache_dir=kwargs["cache_dir"])
        analysis = cls()
        result = analysis.run(run, cls.Options(**{f.name: kwargs[f.name] for f in fields}))
        _print_summary(analysis.summary(result))
        console.print("→ " + ", ".join(str(p) for p in analysis.outputs(run.path)))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = cls.name.replace("-", "_")
    single = typer.Typer(add_completion=False)
    single.command(cls.name, help=cls.description)(command)
    return typer.main.get_command(single)


class _AnalysisGroup(TyperGroup):
    """``mindsight analyze``: one subcommand per registered analysis (:data:`ANALYSES`), built
    when asked for, so a new analysis needs no edit here and ``mindsight --help`` stays fast."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from mindsight.analysis import analysis_names

        return analysis_names()

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from mindsight.analysis import ANALYSES

        return analysis_command(ANALYSES.get(cmd_name)) if cmd_name in ANALYSES else None


analyze_app = typer.Typer(cls=_AnalysisGroup, no_args_is_help=True,
                          help="Analyses of a trained run (→ RUN_DIR/analysis/*.json + figures).")
app.add_typer(analyze_app, name="analyze")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run directory.")] = Path("runs/demo"),
    data: Annotated[Path, typer.Option(help="Where the simulated dataset goes (reused if there).")] = Path("data/sim-demo"),
    epochs: Annotated[int | None, typer.Option(help="Maximum training epochs [20].")] = None,
    progress: Progress = None,
    cache_dir: CacheDir = None,
) -> None:
    """The main job on built-in data: simulate, train ATM and ridge, evaluate, write a report."""
    from mindsight.demo import run_demo
    from mindsight.evaluate.report import summary_tables

    m = run_demo(out, data, epochs=epochs, cache_dir=cache_dir)
    for title, columns, rows in summary_tables(m):
        console.print(_table(rows, columns, title=title))
    console.print(f"ATM {100 * m['top1']:.1f} % · ridge {100 * m['baselines']['ridge']['top1']:.1f} % · "
                  f"ceiling {100 * m['ceiling_top1']:.1f} % · chance {100 * m['chance_top1']:.1f} % "
                  f"({m['n_way']}-way top-1)\nreport → {out / 'report.md'}")


View = _choices("View", ("terminal", "web", "both", "none"))


@app.command()
def stream(
    run_dir: RunDir,
    source: Annotated[str, typer.Option("--source", help="LSL name of the EEG/MEG stream.")] = "mindsight-replay",
    markers: Annotated[str, typer.Option(help="Stimulus markers: 'stim' (the stream's stim channel), the name of an LSL marker stream, or 'auto' (stim channel if there, else SOURCE-annotations).")] = "auto",
    marker_offset: Annotated[float, typer.Option(help="Seconds added to marker-stream times (their known delay against the data; PlayerLSL's markers: 1 sample).")] = 0.0,
    replay: Annotated[Path | None, typer.Option("--replay", help="Replay this recording as SOURCE first (see `mindsight replay`).")] = None,
    fold: Annotated[str | None, typer.Option(help=r"Fold whose model decodes \[the first].")] = None,
    subject: Annotated[int | None, typer.Option(help=r"Subject token for the model \[the fold's test subject].")] = None,
    candidates: Annotated[Path | None, typer.Option(help=r"Folder of images to rank \[the run's test images].")] = None,
    window: Annotated[list[float] | None, typer.Option("--window", help=r"Seconds after onset at which to predict (repeatable) \[every --window-step, and the epoch's end].")] = None,
    window_step: Annotated[float, typer.Option(help="Spacing of the growing windows (s).")] = 0.1,
    k: Annotated[int, typer.Option("-k", help="Candidates per prediction.")] = 5,
    preprocess_: Annotated[str | None, typer.Option("--preprocess", help=r"The preprocessing the run's data had: official, nice-atm or a preprocessing.json \[the one saved beside the data, else the layout's].")] = None,
    mvnn: Annotated[str | None, typer.Option(help=r"MVNN whitener: 'none', or a raw training recording to compute it from \[the covariances saved by `mindsight preprocess`].")] = None,
    mvnn_session: Annotated[str | None, typer.Option(help=r"Whiten with this session's covariance \[the mean over sessions].")] = None,
    scale: Annotated[float | None, typer.Option(help=r"Multiply the live data by this (a unit factor) \[checked against the training data].")] = None,
    reconstruct_: Annotated[bool, typer.Option("--reconstruct", help="Reconstruct each stimulus in a background process (needs `mindsight reconstruct RUN_DIR` first).")] = False,
    view: Annotated[View, typer.Option(help="Live view: the terminal, a local web page, both or none.")] = View.terminal,
    port: Annotated[int, typer.Option(help="Port of the web page (0: any free one).")] = 8765,
    out: Annotated[Path | None, typer.Option(help=r"Folder for predictions.jsonl and summary.json \[RUN_DIR/stream/<time>].")] = None,
    outlet: Annotated[str | None, typer.Option(help="Name of the LSL outlet of predictions ('' for none).")] = "mindsight-predictions",
    timeout: Annotated[float, typer.Option(help="Stop when the stream sends nothing for this long (s).")] = 5.0,
    connect_timeout: Annotated[float, typer.Option(help="How long to look for the streams at start (s).")] = 10.0,
    max_events: Annotated[int | None, typer.Option(help="Stop after this many stimuli.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    threads: Annotated[int, typer.Option(help="Torch threads for decoding (1 leaves the other cores to LSL and the views).")] = 1,
    cache_dir: CacheDir = None,
) -> None:
    """Decode a live LSL stream with a trained run: anytime top-k retrieval per stimulus, to JSON
    lines, an LSL outlet and a live view."""
    import torch

    from mindsight.stream.session import StreamConfig, stream_run

    torch.set_num_threads(max(1, threads))
    cfg = StreamConfig(source=source, markers=markers, marker_offset=marker_offset, fold=fold, subject=subject,
                       candidates=None if candidates is None else str(candidates), windows=window or None,
                       window_step=window_step, k=k, preprocess=preprocess_, mvnn=mvnn, mvnn_session=mvnn_session,
                       scale=scale, timeout=timeout, connect_timeout=connect_timeout,
                       max_events=max_events, duration=duration,
                       reconstruct=reconstruct_, out=None if out is None else str(out), outlet=outlet or None,
                       view=view.value, port=port)
    player = None
    try:
        if replay is not None:
            from mindsight.stream.replay import Replay

            player = Replay(replay, name=source).start()
        summary = stream_run(run_dir, cfg, cache_dir=cache_dir, console=console)
    finally:
        if player is not None:
            player.stop()
    final = summary["accuracy"].get(summary["final_window"], {})
    lat = summary["latency_ms"]
    console.print(f"{summary['n_final']} stimuli, {summary['n_predictions']} predictions "
                  f"({summary['reason']}); final window top-1 "
                  + (f"{100 * final['top1']:.1f} %" if final else "n/a")
                  + f", latency p50 {lat['p50']} ms, p95 {lat['p95']} ms; lost {summary['lost']}\n"
                  f"predictions → {summary['out']}")


@app.command("replay")
def replay_cmd(
    recording: Annotated[Path, typer.Argument(help="Raw THINGS-EEG2 .npy (also the simulator's raw_data/), a FIF or any MNE-readable file, or a folder holding raw_data/.")],
    name: Annotated[str, typer.Option(help="LSL name of the data stream (markers: NAME-annotations).")] = "mindsight-replay",
    chunk_size: Annotated[int, typer.Option(help="Samples pushed at a time.")] = 10,
    start: Annotated[float, typer.Option(help="Start this many seconds into the recording.")] = 0.0,
    duration: Annotated[float | None, typer.Option(help=r"Play this many seconds \[all].")] = None,
    repeat: Annotated[int, typer.Option(help="Times to play it (0: forever).")] = 1,
) -> None:
    """Stream a recording live on LSL (mne-lsl's PlayerLSL), markers included, until it ends."""
    import time

    from mindsight.stream.replay import Replay

    player = Replay(recording, name=name, chunk_size=chunk_size, start=start, duration=duration,
                    repeat=None if repeat == 0 else repeat).start()
    console.print(f"streaming {recording} as {name!r} ({player.duration:.1f} s"
                  f"{', forever' if repeat == 0 else f' × {repeat}'}); Ctrl-C stops")
    try:
        while player.running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        player.stop()


@app.command("evaluate-reconstruction")
def evaluate_reconstruction(
    seen: Annotated[Path, typer.Option("--seen", help="Folder of the images the subject saw.")],
    generated: Annotated[Path, typer.Option("--generated", help="Folder of the reconstructions, same file names (png/jpg).")],
    out: Annotated[Path | None, typer.Option(help="JSON file to write [GENERATED/reconstruction_metrics.json].")] = None,
    device: DeviceOption = Device.auto,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Only these metrics (repeatable) \\[all].")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    progress: Progress = None,
) -> None:
    """Score reconstructions against the seen images: PixCorr, SSIM, AlexNet(2/5), Inception, CLIP
    two-way identification, EffNet-B, SwAV, CLIP score."""
    from mindsight.evaluate.reconstruction import evaluate_folders, summary_rows

    m = evaluate_folders(seen, generated, out=out, device=device.value, metrics=metric or None,
                         batch_size=batch_size)
    console.print(_table(summary_rows(m), ["metric", "value", "better", "chance", "weights / reason"],
                         title=f"reconstruction metrics ({m['n_images']} image pairs)"))
    console.print(f"metrics → {m['out']}")


@app.command()
def doctor(
    fix: Annotated[bool, typer.Option(help="Repair what can be repaired (torchaudio on CPU-only torch).")] = False,
) -> None:
    """Check the installation: torch, torchvision, torchaudio, offline models."""
    from mindsight import _torch_compat as tc

    if fix:
        removed = tc.fix_torchaudio()
        if removed:
            console.print(f"torchaudio: removed {len(removed)} CUDA-only libraries ({removed[0].parent}); "
                          "it now runs in pure-Python mode")
    import torch

    console.print(f"torch {torch.__version__} (cuda available: {torch.cuda.is_available()})")
    tc.ensure_torchvision()
    import torchvision

    console.print(f"torchvision {torchvision.__version__}: ok")
    problem = tc.torchaudio_problem()
    console.print("torchaudio: ok" if problem is None else f"[red]torchaudio: {problem}[/red] (run `mindsight doctor --fix`)")
    if problem is not None:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: run the app, turning mindsight errors into one-line messages."""
    from mindsight.output import enable_console

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    enable_console()
    try:
        app()
    except MindsightError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
