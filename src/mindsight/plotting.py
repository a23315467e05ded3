"""matplotlib for figures written to files: the non-interactive backend and atomic PNG writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mindsight._atomic import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive backend (figures are only written to files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (temp file, then rename) and close it."""
    plt = pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
