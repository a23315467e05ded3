"""Make torchvision and torchaudio usable on CPU-only installs of torch.

On machines with only a CPU build of torch, the available torchvision/torchaudio wheels carry
CUDA-linked extensions:

- torchvision's ``_C`` fails to load, and its import then dies with
  "operator torchvision::nms does not exist". :func:`ensure_torchvision` registers the two op
  schemas torchvision's import-time meta registrations need; models and transforms then work
  (detection ops and video/image io stay unavailable, which mindsight does not use).
- torchaudio's compiled libraries fail to load; without them it runs in pure-Python mode, which
  is all braindecode needs. :func:`fix_torchaudio` removes them (``mindsight doctor --fix``,
  run by ``make install``).

On a normal GPU install both functions detect that nothing is wrong and do nothing.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

_TORCHVISION_READY = False


def ensure_torchvision() -> None:
    """Call before the first (direct or indirect) ``import torchvision``."""
    global _TORCHVISION_READY
    if _TORCHVISION_READY or "torchvision" in sys.modules:
        return
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    if not _op_exists(torch, "nms"):
        for lib in Path(spec.submodule_search_locations[0]).glob("_C*.so"):
            try:
                torch.ops.load_library(str(lib))
            except OSError:
                pass  # CUDA-linked build on a CPU-only machine
    if not _op_exists(torch, "nms"):
        lib = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 - kept alive below
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        globals()["_TORCHVISION_SCHEMAS"] = lib
    _TORCHVISION_READY = True


def _op_exists(torch, name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def torchaudio_problem() -> str | None:
    """Why torchaudio fails to import, run in a fresh interpreter; None if it imports."""
    if importlib.util.find_spec("torchaudio") is None:
        return None
    proc = subprocess.run(
        [sys.executable, "-c", "import torchaudio"], capture_output=True, text=True, timeout=300
    )
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["unknown error"])[-1]


def fix_torchaudio() -> list[Path]:
    """Delete torchaudio's compiled libraries when (and only when) they cannot be loaded."""
    problem = torchaudio_problem()
    if problem is None or "Could not load this library" not in problem:
        return []
    spec = importlib.util.find_spec("torchaudio")
    libdir = Path(spec.submodule_search_locations[0]) / "lib"  # type: ignore[union-attr,index]
    removed = sorted(libdir.glob("*.so"))
    for lib in removed:
        lib.unlink()
    return removed
