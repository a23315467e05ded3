"""The file containers the public EEG/MEG releases use, read without surprises.

THINGS-EEG2 ships dicts of arrays in two containers: ``np.save(path, dict)`` (an NPY file whose
payload is a pickled 0-d object array) and a raw ``pickle.dump(dict, f, protocol=4)`` that keeps
the ``.npy`` suffix. Both hold multi-gigabyte float64 arrays.

:func:`read_dict` reads either container with a *lazy, restricted* unpickler:

- lazy: every large array payload is skipped while unpickling and returned as a read-only
  ``np.memmap`` into the file, so opening an 8 GB file costs milliseconds and no RAM;
- restricted: only numpy arrays, dtypes, scalars and builtin containers may be unpickled.
  Anything else (which ``np.load(allow_pickle=True)`` would execute) is refused.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mindsight._atomic import atomic_path
from mindsight.errors import DataFormatError, MissingFileError

NPY_MAGIC = b"\x93NUMPY"
_LAZY_MIN_BYTES = 1 << 20  # byte strings at least this long stay on disk

# (module, name) pairs a data pickle may reference. numpy moved its internals from numpy.core to
# numpy._core in 2.0; files written by either version are accepted.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("codecs", "encode"),
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS.add((_mod, "_reconstruct"))
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED_GLOBALS.add((_mod, "_frombuffer"))


class _Blob(NamedTuple):
    """A byte string left on disk: ``length`` bytes starting at ``offset``."""

    offset: int
    length: int


class _PendingArray:
    """Stands in for an ndarray during unpickling (``_reconstruct`` + BUILD); resolved after."""

    state: tuple | None = None

    def __setstate__(self, state: tuple) -> None:
        self.state = state


class _PendingBuffer(NamedTuple):
    """Stands in for ``numpy._core.numeric._frombuffer(buf, dtype, shape, order)`` (protocol 5)."""

    buf: Any
    dtype: np.dtype
    shape: tuple
    order: str


def _pending_reconstruct(subtype: Any, shape: Any, typecode: Any) -> _PendingArray:
    return _PendingArray()


def _pending_frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> _PendingBuffer:
    return _PendingBuffer(buf, np.dtype(dtype), tuple(shape), order)


class _LazyUnpickler(pickle._Unpickler):  # the pure-Python unpickler exposes its opcode table
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, fh: io.BufferedReader, path: Path) -> None:
        super().__init__(fh)
        self._fh = fh
        self._path = path
        self._size = os.fstat(fh.fileno()).st_size

    # -- opcodes carrying byte strings: large ones are skipped and remembered as _Blob ----------
    def _bytes_or_blob(self, n: int) -> bytes | _Blob:
        if n >= _LAZY_MIN_BYTES and self._unframer.current_frame is None:
            pos = self._fh.tell()
            if pos + n > self._size:
                raise DataFormatError(
                    f"{self._path}: the file is truncated: an array needs {n} bytes at offset "
                    f"{pos} but the file has {self._size}. Re-download or re-create it."
                )
            self._fh.seek(n, io.SEEK_CUR)
            return _Blob(pos, n)
        data = self.read(n)
        if len(data) < n:
            raise EOFError("pickle data was truncated")
        return data

    def _load_binbytes(self) -> None:
        (n,) = struct.unpack("<I", self.read(4))
        self.append(self._bytes_or_blob(n))

    def _load_binbytes8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        self.append(self._bytes_or_blob(n))

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        data = self._bytes_or_blob(n)
        self.append(data if isinstance(data, _Blob) else bytearray(data))

    dispatch[pickle.BINBYTES[0]] = _load_binbytes
    dispatch[pickle.BINBYTES8[0]] = _load_binbytes8
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataFormatError(
                f"{self._path}: refusing to unpickle {module}.{name}: mindsight only reads "
                "arrays, numbers, strings and containers from data pickles"
            )
        if name == "_reconstruct":
            return _pending_reconstruct
        if name == "_frombuffer":
            return _pending_frombuffer
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core.* on numpy 2
            return super().find_class(module, name)

    # -- after load: turn placeholders into arrays (memmaps for on-disk payloads) ---------------
    def resolve(self, obj: Any) -> Any:
        if isinstance(obj, _PendingArray):
            return self._array_from_state(obj.state)
        if isinstance(obj, _PendingBuffer):
            return self._array(obj.buf, obj.dtype, obj.shape, obj.order == "F")
        if isinstance(obj, _Blob):
            return self._read_blob(obj)
        if isinstance(obj, dict):
            return type(obj)((k, self.resolve(v)) for k, v in obj.items())
        if isinstance(obj, list):
            return [self.resolve(v) for v in obj]
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return tuple(self.resolve(v) for v in obj)
        return obj

    def _array_from_state(self, state: tuple | None) -> np.ndarray:
        if state is None or len(state) not in (4, 5):
            raise DataFormatError(f"{self._path}: unexpected ndarray pickle state")
        shape, dtype, fortran, raw = state[-4:]
        shape = tuple(int(s) for s in shape)
        if dtype.hasobject:
            out = np.empty(int(np.prod(shape)), dtype=object)
            for i, item in enumerate(raw):
                out[i] = self.resolve(item)
            return out.reshape(shape, order="F" if fortran else "C")
        return self._array(raw, dtype, shape, bool(fortran))

    def _array(self, raw: Any, dtype: np.dtype, shape: tuple, fortran: bool) -> np.ndarray:
        order = "F" if fortran else "C"
        expected = dtype.itemsize * int(np.prod(shape))
        if isinstance(raw, _Blob):
            if raw.length != expected:
                raise DataFormatError(
                    f"{self._path}: array of shape {shape} and dtype {dtype} needs {expected} "
                    f"bytes but the file stores {raw.length}; the file is corrupt"
                )
            return np.memmap(
                self._path, dtype=dtype, mode="r", offset=raw.offset, shape=shape, order=order
            )
        if isinstance(raw, str):  # written by Python 2
            raw = raw.encode("latin1")
        if len(raw) != expected:
            raise DataFormatError(
                f"{self._path}: array of shape {shape} and dtype {dtype} needs {expected} bytes "
                f"but the file stores {len(raw)}; the file is corrupt"
            )
        return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order=order).copy()

    def _read_blob(self, blob: _Blob) -> bytes:
        self._fh.seek(blob.offset)
        return self._fh.read(blob.length)


def sniff(path: str | os.PathLike) -> str:
    """Name the container of ``path`` from its first bytes: npy, pickle, zip, safetensors, unknown."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # torch.save's default container
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


def _read_npy_header(fh: io.BufferedReader) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fh)
    return np.lib.format._read_array_header(fh, version)  # (3, 0): utf-8 header


def _unpickle(fh: io.BufferedReader, path: Path, unpickler_class: type | None = None) -> Any:
    """Unpickle lazily (``unpickler_class``: a :class:`_LazyUnpickler` subclass, or it)."""
    unpickler = (unpickler_class or _LazyUnpickler)(fh, path)
    try:
        obj = unpickler.load()
    except (EOFError, pickle.UnpicklingError, struct.error, IndexError, KeyError) as exc:
        raise DataFormatError(
            f"{path}: the file is truncated or corrupt ({type(exc).__name__}: {exc}). "
            "Re-download or re-create it."
        ) from None
    return unpickler.resolve(obj)


def read_pickled(path: str | os.PathLike) -> Any:
    """Read any object from an NPY file (plain or pickled) or a raw pickle, lazily.

    Plain NPY arrays come back memory-mapped; pickled payloads go through the restricted lazy
    unpickler. A 0-d object array (``np.save`` of a dict) is unwrapped to its item.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "npy":
        with open(path, "rb") as fh:
            try:
                shape, _fortran, dtype = _read_npy_header(fh)
            except ValueError as exc:
                raise DataFormatError(f"{path}: corrupt NPY header ({exc})") from None
            if not dtype.hasobject:
                return read_npy(path)
            obj = _unpickle(fh, path)
        if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
            return obj.item()
        return obj
    if kind == "pickle":
        with open(path, "rb") as fh:
            return _unpickle(fh, path)
    raise DataFormatError(
        f"{path}: not an NPY file or a pickle (container looks like {kind!r}); "
        "expected the THINGS-EEG2 / NICE / ATM release format"
    )


def read_dict(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a dict saved with ``np.save(path, dict)`` or ``pickle.dump(dict, f)``.

    Large arrays come back as read-only memmaps; ``required`` keys are checked and a missing one
    is reported together with the keys the file does have.
    """
    path = Path(path)
    obj = read_pickled(path)
    if not isinstance(obj, dict):
        raise DataFormatError(
            f"{path}: expected a dict of arrays, found {type(obj).__name__}"
            + (f" of shape {obj.shape}" if isinstance(obj, np.ndarray) else "")
        )
    missing = [k for k in required if k not in obj]
    if missing:
        raise DataFormatError(
            f"{path}: missing key(s) {', '.join(map(repr, missing))}; the file has "
            f"{', '.join(map(repr, obj)) or 'no keys'}"
        )
    return obj


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a plain NPY array, with a clear error for a truncated file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise DataFormatError(f"{path}: truncated or corrupt NPY file ({exc})") from None


def write_npy_dict(path: str | os.PathLike, obj: dict[str, Any]) -> Path:
    """Write ``obj`` as the official THINGS-EEG2 releases do: ``np.save(path, dict)``, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, obj, allow_pickle=True)
    return path


def write_pickle_dict(path: str | os.PathLike, obj: dict[str, Any], protocol: int = 4) -> Path:
    """Write ``obj`` as the NICE/ATM releases do: a raw pickle (protocol 4), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path
