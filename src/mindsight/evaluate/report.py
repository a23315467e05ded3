"""Human-readable views of metrics.json: tables for the terminal and the repetition plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mindsight.plotting import pyplot, save_figure


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}"


def _with_ci(ci: dict[str, Any] | None, value: float) -> str:
    if not ci or ci.get("ci_low") is None:
        return _pct(value)
    return f"{_pct(value)} [{_pct(ci['ci_low'])}, {_pct(ci['ci_high'])}]"


def summary_tables(m: dict[str, Any]) -> list[tuple[str, list[str], list[dict[str, str]]]]:
    """(title, columns, rows) for the headline, k-way, per-subject and repetition tables."""
    ci = m.get("ci95", {})
    p = m["protocol"]
    head = [
        {"metric": f"{m['n_way']}-way top-1 (%)", "value": _with_ci(ci.get("top1"), m["top1"]),
         "chance": _pct(m["chance_top1"])},
        {"metric": f"{m['n_way']}-way top-5 (%)", "value": _with_ci(ci.get("top5"), m["top5"]),
         "chance": _pct(m["chance_top5"])},
        {"metric": "relative median rank", "value": f"{m['median_rank']:.3f}", "chance": "0.500"},
    ]
    if m.get("classification"):
        c = m["classification"]
        head += [{"metric": f"classification top-1 (%, {c['n_way']} names)",
                  "value": _with_ci(ci.get("classification_top1"), c["top1"]),
                  "chance": _pct(c["chance_top1"])},
                 {"metric": "classification top-5 (%)",
                  "value": _with_ci(ci.get("classification_top5"), c["top5"]), "chance": ""}]
    elif "classification" in m:  # null: no text features for the concept names
        head.append({"metric": "classification", "chance": "",
                     "value": f"null ({m.get('classification_reason') or 'no text features'})"})
    if m.get("centres"):
        c = m["centres"]
        head += [{"metric": f"NICE centres top-{k} (%, {c['n_way']} concepts)",
                  "value": _with_ci(ci.get("centres_top1"), c["top1"]) if k == 1 else _pct(c[f"top{k}"]),
                  "chance": _pct(min(1.0, k / c["n_way"]))} for k in (1, 3, 5)]
    if "single_trial" in m:
        head.append({"metric": "single-trial top-1 (%)", "value": _pct(m["single_trial"]["top1"]),
                     "chance": _pct(m["chance_top1"])})
    title = (f"{p.get('encoder')} · {p.get('image_model')} · {p.get('protocol')} · subjects "
             f"{p.get('subjects')} · seeds {p.get('seeds')} (95 % CI over {ci.get('over')})")
    tables = [(title, ["metric", "value", "chance"], head)]
    if m.get("modalities"):  # a multimodal model (CogCapPro): every modality's own retrieval
        rows = [{"modality": k, "top-1 (%)": _pct(v["top1"]), "top-5 (%)": _pct(v["top5"])}
                for k, v in m["modalities"].items()]
        rows += [{"modality": f"{k} (skipped)", "top-1 (%)": "", "top-5 (%)": ""}
                 for k in p.get("modality_notes") or {}]
        tables.append(("per modality (text: the concept among the test concepts; fused: the "
                       "headline)", list(rows[0]), rows))
    if m.get("k_way"):
        rows = [{"k": k, "top-1 (%)": _pct(v["top1"]), "top-5 (%)": _pct(v["top5"]),
                 "chance top-1 (%)": _pct(1 / int(k))} for k, v in m["k_way"].items()]
        tables.append(("k-way retrieval (random distractors)", list(rows[0]), rows))
    if len(m.get("per_subject", {})) > 1:
        rows = [{"subject": s, "top-1 (%)": _pct(v["top1"]), "top-5 (%)": _pct(v["top5"]),
                 "seeds": str(v["n_seeds"])} for s, v in m["per_subject"].items()]
        tables.append(("per subject (mean over seeds)", list(rows[0]), rows))
    rep = m.get("repetitions")
    if rep and len(rep["n"]) > 1:
        rows = [{"repetitions averaged": str(n), "top-1 (%)": _pct(a), "top-5 (%)": _pct(b)}
                for n, a, b in zip(rep["n"], rep["top1"], rep["top5"], strict=True)]
        tables.append(("accuracy vs. averaged test repetitions", list(rows[0]), rows))
    return tables


def plot_repetitions(m: dict[str, Any], path: str | Path) -> Path:
    """Top-1/top-5 against the number of averaged test repetitions, with chance."""
    plt = pyplot()
    rep = m["repetitions"]
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(rep["n"], [100 * v for v in rep["top1"]], "o-", label="top-1")
    ax.plot(rep["n"], [100 * v for v in rep["top5"]], "s-", label="top-5")
    ax.axhline(100 * m["chance_top1"], color="grey", ls="--", lw=1, label="chance top-1")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test repetitions averaged")
    ax.set_ylabel(f"{m['n_way']}-way accuracy (%)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_retrievals(embeddings: Any, features: Any, image_paths: list[Path], path: str | Path,
                    n_examples: int = 6, seed: int = 0) -> Path:
    """Example test stimuli (left) with their top-5 retrieved test images; green = correct."""
    plt = pyplot()
    import numpy as np
    from PIL import Image

    from mindsight.evaluate.retrieval import similarity

    sim = similarity(embeddings, features).cpu().numpy()
    rows = np.random.default_rng(seed).choice(len(sim), min(n_examples, len(sim)), replace=False)
    fig, axes = plt.subplots(len(rows), 6, figsize=(7.5, 1.35 * len(rows)), dpi=110)
    axes = np.atleast_2d(axes)
    for r, q in enumerate(rows):
        top = np.argsort(-sim[q])[:5]
        for c, idx in enumerate([q, *top]):
            ax = axes[r, c]
            ax.imshow(Image.open(image_paths[idx]).convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "black" if c == 0 else ("tab:green" if idx == q else "lightgrey")
            for side in ax.spines.values():
                side.set_edgecolor(colour)
                side.set_linewidth(3 if c else 1)
        axes[r, 0].set_ylabel("seen", fontsize=8)
    for c, title in enumerate(["stimulus", "1st", "2nd", "3rd", "4th", "5th"]):
        axes[0, c].set_title(title, fontsize=9)
    fig.suptitle("retrieval from EEG among the test images (green: the seen image)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_accuracy(m: dict[str, Any], path: str | Path) -> Path:
    """Top-1 accuracy per k-way against chance, and n-way against baselines and the ceiling."""
    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(8.5, 3.2), dpi=120, gridspec_kw={"width_ratios": [3, 2]})
    ks = [int(k) for k in m.get("k_way", {}) if int(k) < m["n_way"]] + [m["n_way"]]
    acc = [m["k_way"][str(k)]["top1"] for k in ks[:-1]] + [m["top1"]]
    xs = range(len(ks))
    a.bar(xs, [100 * v for v in acc], color="tab:blue", label=m["protocol"].get("encoder"))
    a.plot(xs, [100 / k for k in ks], "k_", markersize=22, mew=2, label="chance")
    a.set_xticks(list(xs), [f"{k}-way" for k in ks])
    a.set_ylabel("top-1 (%)")
    a.legend(frameon=False, fontsize=8)
    names = [m["protocol"].get("encoder", "model")]
    vals = [m["top1"]]
    for name, base in m.get("baselines", {}).items():
        names.append(name)
        vals.append(base["top1"])
    if "ceiling_top1" in m:
        names.append("ceiling")
        vals.append(m["ceiling_top1"])
    b.bar(range(len(vals)), [100 * v for v in vals],
          color=["tab:blue"] + ["tab:grey"] * (len(vals) - 1 - ("ceiling_top1" in m)) + (["tab:green"] if "ceiling_top1" in m else []))
    b.axhline(100 * m["chance_top1"], color="k", lw=1, ls="--")
    b.set_xticks(range(len(vals)), names)
    b.set_title(f"{m['n_way']}-way top-1 (%)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_training(histories: dict[str, list[dict[str, float]]], path: str | Path) -> Path:
    """Training and validation loss and validation top-1 per epoch, one line per fold."""
    plt = pyplot()

    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3), dpi=120)
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist]
        a.plot(ep, [h["loss"] for h in hist], label=f"{name} train")
        a.plot(ep, [h["val_loss"] for h in hist], "--", label=f"{name} validation")
        b.plot(ep, [100 * h["val_top1"] for h in hist], label=name)
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.legend(frameon=False, fontsize=7)
    b.set_xlabel("epoch")
    b.set_ylabel("validation top-1 (%)")
    fig.tight_layout()
    return save_figure(fig, path)
