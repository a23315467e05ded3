"""Human-readable views of metrics.json: tables for the terminal and the repetition plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mindsight._atomic import atomic_path


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
    if "classification" in m:
        c = m["classification"]
        head += [{"metric": f"classification top-1 (%, {c['n_way']} names)",
                  "value": _with_ci(ci.get("classification_top1"), c["top1"]),
                  "chance": _pct(c["chance_top1"])},
                 {"metric": "classification top-5 (%)",
                  "value": _with_ci(ci.get("classification_top5"), c["top5"]), "chance": ""}]
    if "single_trial" in m:
        head.append({"metric": "single-trial top-1 (%)", "value": _pct(m["single_trial"]["top1"]),
                     "chance": _pct(m["chance_top1"])})
    title = (f"{p.get('encoder')} · {p.get('image_model')} · {p.get('protocol')} · subjects "
             f"{p.get('subjects')} · seeds {p.get('seeds')} (95 % CI over {ci.get('over')})")
    tables = [(title, ["metric", "value", "chance"], head)]
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
