"""A float32, memory-mapped on-disk cache for large EEG/MEG arrays.

The NICE/ATM THINGS-EEG2 release stores ~8 GB of float64 per subject in a pickle. The first load
converts the array once, in chunks, to a float32 ``.npy`` in the cache directory; every later load
memory-maps that file (about a second, and no RAM until the data is touched). The conversion
streams the source through a fixed-size buffer, so its memory use is one chunk, not the file.

A cache entry is keyed by the source's absolute path, size and modification time: a changed or
replaced source file gets a new entry, never a stale one. ``meta.json`` is written last, so an
interrupted conversion is simply redone on the next load. Sources that already are float32 NPY
files (the ``things-eeg2-dataset`` layout) are validated once and mapped in place, not copied.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mindsight._atomic import atomic_path, write_json
from mindsight.errors import DataFormatError
from mindsight.io.containers import read_dict, read_npy, sniff

CACHE_VERSION = 1
CHUNK_BYTES = 64 << 20  # float64 read per step during conversion


def default_cache_dir() -> Path:
    """``$MINDSIGHT_CACHE_DIR``, else ``$XDG_CACHE_HOME/mindsight``, else ``~/.cache/mindsight``."""
    if env := os.environ.get("MINDSIGHT_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mindsight"


def _entry_dir(source: Path, key: str, cache_dir: Path) -> tuple[Path, dict[str, Any]]:
    st = source.stat()
    ident = {
        "source": str(source.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "key": key,
        "version": CACHE_VERSION,
    }
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / "arrays" / f"{source.parent.name}-{source.stem}-{digest}", ident


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def iter_float32_chunks(
    array: np.ndarray, source: Path, key: str, chunk_bytes: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_row, float32 chunk)`` over axis 0, checking every value is finite.

    C-ordered memmaps are read with plain file reads into one reusable buffer, so the pages of the
    source never accumulate in this process's memory.
    """
    n_rows = array.shape[0]
    row_items = int(np.prod(array.shape[1:], dtype=np.int64))
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    rows = max(1, budget // max(1, row_items * array.dtype.itemsize))
    direct = isinstance(array, np.memmap) and array.flags.c_contiguous
    fh = open(array.filename, "rb") if direct else None  # type: ignore[union-attr]
    try:
        for start in range(0, n_rows, rows):
            stop = min(n_rows, start + rows)
            if fh is not None:
                fh.seek(array.offset + start * row_items * array.dtype.itemsize)  # type: ignore[union-attr]
                raw = np.fromfile(fh, dtype=array.dtype, count=(stop - start) * row_items)
                if raw.size != (stop - start) * row_items:
                    raise DataFormatError(f"{source}: the file is truncated inside {key!r}")
                raw = raw.reshape((stop - start, *array.shape[1:]))
            else:
                raw = np.asarray(array[start:stop])
            with np.errstate(over="ignore"):  # values beyond float32 become Inf, reported below
                chunk = raw.astype(np.float32, copy=False)
            bad = ~np.isfinite(chunk)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                idx = (idx[0] + start, *idx[1:])
                what = "NaN" if np.isnan(chunk[bad]).any() else "Inf (or a value beyond float32)"
                raise DataFormatError(
                    f"{source}: {key!r} holds {what} at index {idx} (shape {array.shape}); "
                    "clean or re-preprocess the recording"
                )
            yield start, chunk
    finally:
        if fh is not None:
            fh.close()


def load_float32(
    source: str | os.PathLike,
    key: str | None,
    cache_dir: str | os.PathLike | None = None,
    *,
    use_cache: bool = True,
    required: tuple[str, ...] = (),
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(float32 array, other entries)`` for ``key`` of a dict file, or a plain NPY array.

    With ``use_cache`` the array is a read-only memmap of a cached float32 copy (made on first use);
    without, it is read into memory as float32. ``other entries`` are the dict's remaining keys
    (channel names, times, ...) as JSON-compatible values. ``progress(done_rows, total_rows)`` is
    called during a conversion.
    """
    source = Path(source)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry, ident = _entry_dir(source, key or "", cache_dir)
    meta_path = entry / "meta.json"
    if use_cache and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("ident") == ident:
            data_path = source if meta["data"] == "source" else entry / meta["data"]
            return read_npy(data_path), meta["extras"]

    array, extras = _open_source(source, key, required)
    if array.ndim < 1 or array.size == 0:
        raise DataFormatError(f"{source}: {key or 'array'} is empty (shape {array.shape})")
    total = array.shape[0]

    if not use_cache:
        out = np.empty(array.shape, dtype=np.float32)
        for start, chunk in iter_float32_chunks(array, source, key or "array"):
            out[start : start + len(chunk)] = chunk
            if progress:
                progress(start + len(chunk), total)
        return out, extras

    in_place = (
        key is None and isinstance(array, np.memmap) and array.dtype == np.float32
        and array.dtype.byteorder in "=<|" and array.flags.c_contiguous
    )
    entry.mkdir(parents=True, exist_ok=True)
    if in_place:  # validate once, then map the source itself
        for start, chunk in iter_float32_chunks(array, source, "array"):
            if progress:
                progress(start + len(chunk), total)
        data_name = "source"
    else:
        data_name = "data.npy"
        with atomic_path(entry / data_name) as tmp, open(tmp, "wb") as fh:
            header = {"descr": "<f4", "fortran_order": False, "shape": tuple(array.shape)}
            np.lib.format.write_array_header_2_0(fh, header)
            for start, chunk in iter_float32_chunks(array, source, key or "array"):
                chunk.astype("<f4", copy=False).tofile(fh)
                if progress:
                    progress(start + len(chunk), total)
    write_json(meta_path, {"ident": ident, "data": data_name, "shape": list(array.shape),
                           "extras": extras})
    data_path = source if in_place else entry / data_name
    return read_npy(data_path), extras


def _open_source(
    source: Path, key: str | None, required: tuple[str, ...]
) -> tuple[np.ndarray, dict[str, Any]]:
    if key is None:
        if sniff(source) != "npy":
            raise DataFormatError(f"{source}: expected a plain NPY array")
        return read_npy(source), {}
    content = read_dict(source, required=(key, *required))
    array = content[key]
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise DataFormatError(
            f"{source}: {key!r} should be a numeric array, found "
            f"{type(array).__name__}{'' if not isinstance(array, np.ndarray) else ' ' + str(array.dtype)}"
        )
    extras = {k: _jsonable(v) for k, v in content.items() if k != key}
    return array, extras


def clear_cache(cache_dir: str | os.PathLike | None = None) -> int:
    """Delete all cached arrays; return the number of entries removed."""
    import shutil

    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "arrays"
    if not root.is_dir():
        return 0
    entries = [p for p in root.iterdir() if p.is_dir()]
    for p in entries:
        shutil.rmtree(p)
    return len(entries)
