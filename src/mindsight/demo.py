"""``make demo`` / ``mindsight demo``: the main job on the built-in simulated dataset.

Simulate the demo preset (once), train ATM on subject 1 with validation-based selection, train
the best blur-prior method (``DEMO_METHOD``, see BENCHMARKS.md) and the ridge baseline the same
way, evaluate all three on the test set, reconstruct the test images from ATM's embeddings with
the built-in generator (prior + low-level pathway + img2img; ``DEMO_GENERATOR``: the better of the
two offline generators, see below), and write ``RUN_DIR/report.md``
with a table comparing the methods and figures. A second run reuses the dataset, the feature
cache and the finished folds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mindsight._atomic import atomic_path, write_json
from mindsight.config import RunConfig

# mindsight's default recipe (README, "Published recipes") with the MVNN whitener fitted at
# training time (data.scaler: whiten): the simulator's release, like `preprocess --mvnn none`,
# is not whitened. A fresh `make demo` stays under 10 minutes on a 2-core machine (BENCHMARKS.md).
DEMO_CONFIG: dict[str, Any] = {
    "protocol": "intra",
    "data": {"subjects": [1], "train_trials": "subsets", "val_fraction": 0.1, "scaler": "whiten"},
    "model": {"encoder": "atm", "image_model": "efficientnet-lite0"},
    "train": {"epochs": 40, "batch_size": 32, "lr": 3.0e-4, "clip_weight": 0.9,
              "text_weight": 0.1, "patience": 10, "seeds": [0]},
}


# The blur-prior method the demo trains next to ATM: the best of them on the demo data
# (BENCHMARKS.md, "Issue 13"), its preset adapted to the demo data — the offline image model,
# the whitener, batch 64 (as many steps per epoch on 1,080 training images as the preset's 1,024
# on THINGS-EEG2's 16,540) and 40 epochs — with the sharp picture and the simulator's three
# acuity views as its blur levels. The simulator computed their features for its front-end and
# cached them, so the method costs no extraction and `make demo` stays under 10 minutes; the
# report says all this.
DEMO_METHOD = "multiblur"
DEMO_METHOD_OVERRIDES = ["data.subjects=[1]", "model.image_model=efficientnet-lite0",
                         "data.scaler=whiten", "train.batch_size=64", "train.epochs=40",
                         "model.image_views=[sharp, foveated-k21, foveated-k41, foveated-k61]"]


# The generator the demo reconstructs with: the better of the two offline ones on the demo run
# (`python benchmarks/bench_var.py`, BENCHMARKS.md "Issue 15"), said in the report with the reason.
DEMO_GENERATOR = "builtin"
DEMO_GENERATOR_REASON = (
    "`builtin` (diffusion prior + latent diffusion) is used because it identifies the seen picture "
    "better: Lite0 two-way 0.653 against 0.617 for `builtin-var` (AVDE's VAR, fine-tuned on the EEG "
    "embeddings), whose own ceiling is lower (upper bound 0.685 against 0.812). `builtin-var` scores "
    "higher on PixCorr (0.500 against 0.442) and SSIM (0.718 against 0.659), but the blurry image "
    "alone scores higher still on both, so they reward blur more than content. `builtin-var` needs "
    "3.2 times fewer parameters from embedding to picture (2.66 M against 8.52 M with the prior; the "
    "8.1 M low-level ridge is shared) and samples twice as fast, but its stage 2 adds about 3 minutes "
    "(`mindsight reconstruct RUN_DIR --generator builtin-var` runs it)."
)


def method_config(cfg: RunConfig, name: str = DEMO_METHOD, overrides: list[str] | None = None,
                  epochs: int | None = None) -> RunConfig:
    """Preset ``configs/<name>.yaml`` on the demo data of ``cfg``."""
    from mindsight.config import load_preset

    extra = DEMO_METHOD_OVERRIDES if overrides is None else overrides
    return load_preset(name).override(
        extra + [f"data.eeg={cfg.data.eeg}", f"data.images={cfg.data.images}",
                 f"train.seeds={list(cfg.train.seeds)}"] + ([f"train.epochs={epochs}"] if epochs else []))


def run_demo(out: str | Path = "runs/demo", data: str | Path = "data/sim-demo", *,
             epochs: int | None = None, cache_dir: Any = None,
             preset_name: str = "demo", reconstruct: bool = True,
             reconstruct_config: Any = None) -> dict[str, Any]:
    """Simulate, train, evaluate and reconstruct (see the module docstring); returns the
    metrics written to ``out/metrics.json``. Progress bars follow the global switch
    (:func:`mindsight.output.set_progress`)."""
    from mindsight.evaluate import evaluate_run
    from mindsight.simulate import preset, simulate
    from mindsight.train import train_run

    out, data = Path(out), Path(data)
    sim = simulate(data, preset(preset_name), cache_dir=cache_dir)
    cfg = RunConfig.from_dict(DEMO_CONFIG)
    cfg.data.eeg, cfg.data.images = str(data / "Preprocessed_data_250Hz"), str(data / "images")
    if epochs is not None:
        cfg.train.epochs = epochs
    train_run(cfg, out, resume=True, cache_dir=cache_dir)
    ridge_cfg = cfg.override(["model.encoder=ridge"])
    train_run(ridge_cfg, out / "baseline-ridge", resume=True, cache_dir=cache_dir)
    ridge = evaluate_run(out / "baseline-ridge", cache_dir=cache_dir, single_trial=False)
    method_cfg = method_config(cfg, epochs=epochs)
    train_run(method_cfg, out / f"method-{DEMO_METHOD}", resume=True, cache_dir=cache_dir)
    method = evaluate_run(out / f"method-{DEMO_METHOD}", cache_dir=cache_dir, single_trial=False)
    m = evaluate_run(out, cache_dir=cache_dir)
    m["ceiling_top1"], m["ceiling_top5"] = sim["ceiling_top1"], sim["ceiling_top5"]
    m["baselines"] = {"ridge": {"top1": ridge["top1"], "top5": ridge["top5"],
                                "median_rank": ridge["median_rank"]}}
    m["methods"] = {
        "atm": {"top1": m["top1"], "top5": m["top5"], "run": "."},
        DEMO_METHOD: {"top1": method["top1"], "top5": method["top5"], "run": f"method-{DEMO_METHOD}",
                      "levels": method["protocol"].get("levels")},
        "ridge": {"top1": ridge["top1"], "top5": ridge["top5"], "run": "baseline-ridge"},
    }
    m["protocol"]["dataset"] = f"mindsight simulator, preset {preset_name} ({data})"
    write_json(out / "metrics.json", m)
    rec = None
    if reconstruct:
        from mindsight.generate.reconstruct import ReconstructConfig, reconstruct_run

        rec = reconstruct_run(out, reconstruct_config or ReconstructConfig(generator=DEMO_GENERATOR),
                              cache_dir=cache_dir)
    write_report(out, m, sim, cache_dir, rec)
    return m


def write_report(out: Path, m: dict[str, Any], sim: dict[str, Any], cache_dir: Any,
                 rec: dict[str, Any] | None = None) -> Path:
    """``report.md`` with the headline numbers, the protocol, four figures and (if ``rec``) the
    reconstruction section; images and fold records come from the runs in ``out``."""

    from mindsight.evaluate.report import (
        plot_accuracy,
        plot_repetitions,
        plot_retrievals,
        plot_training,
        summary_tables,
    )
    from mindsight.run import Run
    from mindsight.train.checkpoint import load_tensors

    run = Run.open(out, device="cpu", cache_dir=cache_dir)
    images = run.images["test"]
    methods = m["methods"]
    best = max((k for k in methods if k != "ridge"), key=lambda k: methods[k]["top1"])
    best_run = Run.open(out / methods[best]["run"], device="cpu", cache_dir=cache_dir)
    first = best_run.fold(json.loads((best_run.path / "metrics.json").read_text())["folds"][0]["fold"])
    emb, _ = load_tensors(best_run.fold_dir(first) / "test_embeddings.safetensors")
    figs = {
        "retrievals": plot_retrievals(emb["embeddings"], emb["image_table"], images.paths,
                                      out / "retrievals.png"),
        "accuracy": plot_accuracy(m, out / "accuracy.png"),
        "training": plot_training({f["fold"]: run.trained(run.fold(f["fold"]))[1]["history"]
                                   for f in m["folds"]}, out / "training.png"),
        "repetitions": plot_repetitions(m, out / "repetitions.png"),
    }
    lines = ["# mindsight demo: zero-shot retrieval from simulated EEG", "",
             f"Dataset: the built-in simulator ({sim['config']['n_train_concepts']} training "
             f"concepts × {sim['config']['exemplars']} images, {sim['n_way']} unseen test concepts, "
             f"{sim['config']['n_reps_test']} test repetitions; OpenMoji stimuli, CC BY-SA 4.0).", "",
             f"**{m['n_way']}-way top-1: {100 * m['top1']:.1f} %** (top-5 {100 * m['top5']:.1f} %); "
             f"ridge baseline {100 * m['baselines']['ridge']['top1']:.1f} %; ideal-observer ceiling "
             f"{100 * m['ceiling_top1']:.1f} %; chance {100 * m['chance_top1']:.1f} %.", ""]
    lines += methods_section(m, best)
    for title, columns, rows in summary_tables(m):
        lines += [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
        lines.append("")
    lines += ["## Figures", ""] + [f"![{k}]({p.name})" for k, p in figs.items()] + [""]
    if rec is not None:
        lines += reconstruction_section(out, rec)
    p = m["protocol"]
    lines += ["## Protocol", "",
              f"Encoder `{p['encoder']}`, image model `{p['image_model']}`, selection on a validation "
              f"split of training concepts (epoch chosen: {p['epochs_chosen']}), seeds {p['seeds']}; "
              "the test set was read once, after training. Full details: `metrics.json`.", ""]
    path = out / "report.md"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


METHOD_LABELS = {"atm": "ATM (mindsight's default recipe)", "ridge": "ridge (baseline)",
                 "multiblur": "multi-level blur (configs/multiblur.yaml)", "ubp": "UBP (configs/ubp.yaml)",
                 "multiblur-evnet": "multi-level blur + EVNet (configs/multiblur-evnet.yaml)"}


def methods_section(m: dict[str, Any], best: str) -> list[str]:
    """Markdown lines: every method trained on the same data, next to the ceiling and chance."""
    lines = ["## Methods on the same data", "",
             f"Same subject, training split and validation selection; {m['n_way']}-way retrieval of unseen "
             "test concepts on repetition-averaged EEG. The retrieval figure below shows "
             f"`{best}`, the best of them.", "",
             "| method | top-1 | top-5 | run |", "|---|---|---|---|"]
    for name, r in m["methods"].items():
        label = METHOD_LABELS.get(name, name)
        lines.append(f"| {'**' + label + '**' if name == best else label} | {100 * r['top1']:.1f} % | "
                     f"{100 * r['top5']:.1f} % | `{r['run']}` |")
    lines += [f"| ideal observer (ceiling) | {100 * m['ceiling_top1']:.1f} % | {100 * m['ceiling_top5']:.1f} % | – |",
              f"| chance | {100 * m['chance_top1']:.1f} % | {500 * m['chance_top1']:.1f} % | – |", ""]
    levels = m["methods"].get(DEMO_METHOD, {}).get("levels")
    if levels:
        lines += [f"`{DEMO_METHOD}` here is `configs/{DEMO_METHOD}.yaml` adapted to the demo data "
                  f"({'; '.join(f'`{o}`' for o in DEMO_METHOD_OVERRIDES)}): its feature levels "
                  f"({', '.join(levels)}) are the sharp picture and the simulator's own acuity views, whose features the "
                  "simulator had already computed, so the method is shown what the simulated brain "
                  "sees (the levels' weights are learned, nothing tells it which one the brain used). "
                  "`python benchmarks/bench_simulator.py --decoders` runs every method as published "
                  "(UBP's kernels 45/51/57, the 12 blur levels), with the front-end on and off "
                  "(BENCHMARKS.md).", ""]
    return lines


def reconstruction_section(out: Path, rec: dict[str, Any]) -> list[str]:
    """Markdown lines: the reconstruction grid, the metrics of every condition, and a bar chart."""
    from mindsight.generate.figures import METRIC_LABELS, plot_metrics

    rdir = Path(rec["output"]).relative_to(out)
    metrics = rec.get("metrics", {})
    present = [(k, lab) for k, lab in METRIC_LABELS if any(mm.get(k) is not None for mm in metrics.values())]
    fig = plot_metrics(out / "reconstruction_metrics.png", metrics, present) if present else None
    gen = rec["generator"]
    lines = ["## Reconstruction", "",
             f"Generator `{gen['name']}` ({sum(gen['parameters'].values()):,} parameters) conditioned on "
             f"`{gen['embedding_model']}` embeddings; diffusion prior "
             f"{'off' if rec['prior'] is None else format(rec['prior']['parameters'], ',') + ' parameters'}; "
             f"low-level pathway {'off' if rec['lowlevel'] is None else 'on'} (img2img strength "
             f"{rec['config']['strength']}). Conditions: EEG reconstructions, the generator given the true "
             "embedding (upper bound), and random training images (chance). Two-way identification: chance 0.5.", "",
             f"![reconstructions]({rdir / 'grid.png'})", ""]
    if gen["name"] == DEMO_GENERATOR:
        lines += [f"Why this generator: {DEMO_GENERATOR_REASON}", ""]
    if rec["prior"] is not None:
        t, c = rec["embedding_top1"], rec["embedding_cosine"]
        lines += [f"Stage I in embedding space: cosine to the true image embedding {c['brain']:.2f} (EEG "
                  f"embedding) → {c['prior']:.2f} (prior sample); {t['n_way']}-way top-1 "
                  f"{100 * t['brain']:.0f} % → {100 * t['prior']:.0f} % (`mindsight reconstruct {out} --no-prior` "
                  "conditions the generator on the EEG embedding directly).", ""]
    lines += ["| metric | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for k, lab in METRIC_LABELS:
        lines.append(f"| {lab} | " + " | ".join("–" if mm.get(k) is None else f"{mm[k]:.3f}"
                                               for mm in metrics.values()) + " |")
    lines.append("")
    if fig is not None:
        lines += [f"![reconstruction metrics]({fig.name})", ""]
    backbones = {name: b.get("reason") for mm in metrics.values()
                 for name, b in (mm.get("backbones") or {}).items() if b.get("weights") is None}
    if backbones:
        lines += ["– : the backbone's real weights are not available on this machine (the metric is null "
                  "in `reconstruction.json`, with the reason):", ""]
        lines += [f"- `{name}`: {reason}" for name, reason in sorted(backbones.items())] + [""]
    return lines

