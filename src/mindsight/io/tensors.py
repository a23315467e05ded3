"""Tensors someone pickled or ``torch.save``-d, read without running the file's code.

Releases such as ATM's THINGS-MEG pickles and EEG-ImageNet's ``.pth`` files hold torch tensors
in dicts and lists. ``torch.load`` of an untrusted file may run arbitrary code, so every such file
is read here, by one restricted loader:

- a ``torch.save`` zip (the default container since torch 1.6) goes through
  ``torch.load(weights_only=True)``, torch's own restricted unpickler, memory-mapped, with numpy
  arrays, dtypes and scalars added to what it allows;
- a raw pickle goes through :class:`TorchUnpickler`: tensor and storage rebuilding (storages
  through ``torch.load(weights_only=True)``), numpy arrays and scalars and builtin containers.

Anything else in the file (a class, a function) is refused with one line naming it.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path
from typing import Any

from mindsight.errors import DataFormatError
from mindsight.io.containers import sniff

ALLOWED = "only arrays, tensors, numbers, strings and containers are read from data files"
_BUILTINS = ("list", "dict", "tuple", "set", "frozenset", "slice", "range", "complex", "bytearray")
_NUMPY_NAMES = ("ndarray", "dtype", "_reconstruct", "scalar", "_frombuffer")
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_NOT_BUILDABLE = re.compile(r"but got <class '([\w.]+)'>")


class TorchUnpickler(pickle.Unpickler):
    """Reads torch tensors from a raw pickle without running arbitrary code: only tensor and
    storage rebuilding (storages through ``torch.load(weights_only=True)``), numpy and builtins."""

    def __init__(self, fh: Any, path: Path) -> None:
        super().__init__(fh)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return lambda b: torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        allowed = (
            (module == "collections" and name == "OrderedDict")
            or (module == "builtins" and name in _BUILTINS)
            or (module.split(".")[0] == "numpy" and name in _NUMPY_NAMES)
            or (module in ("_codecs", "codecs") and name == "encode")
        )
        if allowed:
            return super().find_class(module, name)
        raise DataFormatError(f"{self._path}: refusing to unpickle {module}.{name}: {ALLOWED}")


def _safe_globals() -> list[Any]:
    """What a ``torch.save`` file may rebuild besides tensors: numpy arrays, dtypes and scalars,
    and ``argparse.Namespace`` (training scripts such as LaBraM's save their arguments next to
    the weights; a namespace only holds attributes)."""
    import argparse

    import numpy as np

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [getattr(np.dtypes, n) for n in getattr(np.dtypes, "__all__", ())]
    return [np.ndarray, np.dtype, _reconstruct, scalar, *dtypes, argparse.Namespace]


def _refusal(path: Path, exc: Exception) -> DataFormatError:
    """One line for a ``torch.load(weights_only=True)`` failure (torch's message spans many)."""
    text = str(exc)
    if m := _REFUSED_GLOBAL.search(text) or _NOT_BUILDABLE.search(text):
        return DataFormatError(f"{path}: refusing to unpickle {m.group(1)}: {ALLOWED}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return DataFormatError(f"{path}: unreadable torch file ({type(exc).__name__}: {first})")


def read_torch(path: str | os.PathLike) -> Any:
    """The object in a ``torch.save`` zip or a raw pickle, tensors as (CPU) torch tensors.

    Zip files are memory-mapped: a tensor's values are read when touched, not at load.
    """
    import torch

    path = Path(path)
    kind = sniff(path)
    if kind == "zip":
        try:
            with torch.serialization.safe_globals(_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # UnpicklingError for a refused global; many kinds for damage
            raise _refusal(path, exc) from None
    if kind != "pickle":
        raise DataFormatError(
            f"{path}: neither a torch.save file nor a pickle (container looks like {kind!r})")
    with open(path, "rb") as fh:
        try:
            return TorchUnpickler(fh, path).load()
        except (EOFError, pickle.UnpicklingError) as exc:
            raise DataFormatError(f"{path}: truncated or corrupt pickle ({exc})") from None


def read_torch_dict(path: str | os.PathLike) -> dict[str, Any]:
    """A dict holding torch tensors (raw pickle or ``torch.save`` zip), its tensors as numpy."""
    import torch

    path = Path(path)
    obj = read_torch(path)
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in obj.items()}
