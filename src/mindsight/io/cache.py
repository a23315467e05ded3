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
from collections.abc import Callable, Iterator, Sequence
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


def to_float32_checked(
    raw: np.ndarray, start: int, source: Path | str, key: str, shape: tuple[int, ...]
) -> np.ndarray:
    """``raw`` (rows ``start:`` of an array of ``shape``) as float32; NaN or Inf is an error."""
    with np.errstate(over="ignore"):  # values beyond float32 become Inf, reported below
        chunk = np.asarray(raw).astype(np.float32, copy=False)
    bad = ~np.isfinite(chunk)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        idx = (idx[0] + start, *idx[1:])
        what = "NaN" if np.isnan(chunk[bad]).any() else "Inf (or a value beyond float32)"
        raise DataFormatError(
            f"{source}: {key!r} holds {what} at index {idx} (shape {tuple(shape)}); "
            "clean or re-preprocess the recording"
        )
    return chunk


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
            yield start, to_float32_checked(raw, start, source, key, array.shape)
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
    on_rows: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(float32 array, other entries)`` for ``key`` of a dict file, or a plain NPY array.

    With ``use_cache`` the array is a read-only memmap of a cached float32 copy (made on first use);
    without, it is read into memory as float32. ``other entries`` are the dict's remaining keys
    (channel names, times, ...) as JSON-compatible values. ``on_rows(done_rows, total_rows)`` is
    called during a conversion (a progress bar's update, e.g. :func:`mindsight.output.progress_callback`).
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

    chunks = _reporting(iter_float32_chunks(array, source, key or "array"), total, on_rows)
    if not use_cache:
        return _gather(array.shape, chunks), extras

    in_place = (
        key is None and isinstance(array, np.memmap) and array.dtype == np.float32
        and array.dtype.byteorder in "=<|" and array.flags.c_contiguous
    )
    entry.mkdir(parents=True, exist_ok=True)
    if in_place:  # validate once, then map the source itself
        for _ in chunks:
            pass
        data_name = "source"
    else:
        data_name = "data.npy"
        _write_npy(entry / data_name, array.shape, chunks)
    write_json(meta_path, {"ident": ident, "data": data_name, "shape": list(array.shape),
                           "extras": extras})
    data_path = source if in_place else entry / data_name
    return read_npy(data_path), extras


def _reporting(chunks: Iterator[tuple[int, np.ndarray]], total: int,
               on_rows: Callable[[int, int], None] | None) -> Iterator[tuple[int, np.ndarray]]:
    """``chunks`` as they are, calling ``on_rows(done_rows, total)`` after each."""
    for start, chunk in chunks:
        yield start, chunk
        if on_rows:
            on_rows(start + len(chunk), total)


def _gather(shape: tuple[int, ...], chunks: Iterator[tuple[int, np.ndarray]]) -> np.ndarray:
    """The float32 chunks assembled in memory."""
    out = np.empty(shape, dtype=np.float32)
    for start, chunk in chunks:
        out[start : start + len(chunk)] = chunk
    return out


def _write_npy(path: Path, shape: tuple[int, ...], chunks: Iterator[tuple[int, np.ndarray]]) -> None:
    """Stream the float32 chunks into an NPY file, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_2_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
        for _, chunk in chunks:
            chunk.astype("<f4", copy=False).tofile(fh)


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


# -- sources that are not dict/NPY files (MNE .fif epochs, torch pickles) ---------------------
def _sources_entry(
    sources: Sequence[str | os.PathLike], key: str, cache_dir: Path
) -> tuple[Path, dict[str, Any]]:
    """Cache entry of data derived from several files (e.g. an MNE file and its split parts)."""
    files = []
    for s in sources:
        st = Path(s).stat()
        files.append({"source": str(Path(s).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    ident = {"sources": files, "key": key, "version": CACHE_VERSION}
    digest = hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    first = Path(sources[0])
    return cache_dir / "arrays" / f"{first.parent.name}-{first.stem}-{digest}", ident


def cached_json(
    sources: Sequence[str | os.PathLike],
    key: str,
    build: Callable[[], dict[str, Any]],
    cache_dir: str | os.PathLike | None = None,
    *,
    use_cache: bool = True,
) -> dict[str, Any]:
    """``build()`` (a JSON-compatible dict describing ``sources``), computed once and cached.

    Keyed like the arrays: a changed source file gives a new entry. Used for headers that are
    slow to read (the events and channels of a multi-gigabyte MNE file).
    """
    if not use_cache:
        return build()
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry, ident = _sources_entry(sources, key, cache_dir)
    path = entry / "header.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("ident") == ident:
            return saved["value"]
    value = build()
    entry.mkdir(parents=True, exist_ok=True)
    write_json(path, {"ident": ident, "value": value})
    return value


def lookup_float32(
    sources: Sequence[str | os.PathLike], key: str, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The cached ``(array, extras)`` that :func:`load_float32_rows` stored for these sources and
    key, memory-mapped; None when there is none (or the sources changed since)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry, ident = _sources_entry(sources, key, cache_dir)
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("ident") != ident or not (entry / meta["data"]).is_file():
        return None
    return read_npy(entry / meta["data"]), meta["extras"]


def load_float32_rows(
    sources: Sequence[str | os.PathLike],
    key: str,
    shape: tuple[int, ...],
    read_rows: Callable[[int, int], np.ndarray],
    cache_dir: str | os.PathLike | None = None,
    *,
    use_cache: bool = True,
    extras: dict[str, Any] | None = None,
    on_rows: Callable[[int, int], None] | None = None,
    chunk_bytes: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A float32 array of ``shape`` read by ``read_rows(start, stop)``, cached like :func:`load_float32`.

    For sources without a dict/NPY container (MNE epochs, torch tensors): ``read_rows`` returns
    rows ``start:stop`` in any float dtype and is only called when the cache misses, one chunk
    of about ``chunk_bytes`` (float64) at a time, so memory use is one chunk. ``key`` names what
    is read (e.g. the trials selected), so different selections of one file are cached apart.
    ``extras`` are stored with the array and returned on later hits; ``on_rows`` as for
    :func:`load_float32`.
    """
    if use_cache and (hit := lookup_float32(sources, key, cache_dir)) is not None:
        return hit
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry, ident = _sources_entry(sources, key, cache_dir)
    meta_path = entry / "meta.json"
    shape = tuple(int(n) for n in shape)
    if len(shape) < 1 or 0 in shape:
        raise DataFormatError(f"{sources[0]}: {key} is empty (shape {shape})")
    total = shape[0]
    row_items = int(np.prod(shape[1:], dtype=np.int64))
    budget = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    step = max(1, budget // max(1, row_items * 8))

    def chunks() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, total, step):
            stop = min(total, start + step)
            raw = np.asarray(read_rows(start, stop))
            if raw.shape != (stop - start, *shape[1:]):
                raise DataFormatError(
                    f"{sources[0]}: reading rows {start}:{stop} of {key} gave shape {raw.shape}, "
                    f"expected {(stop - start, *shape[1:])}"
                )
            yield start, to_float32_checked(raw, start, sources[0], key, shape)

    extras = {k: _jsonable(v) for k, v in (extras or {}).items()}
    if not use_cache:
        return _gather(shape, _reporting(chunks(), total, on_rows)), extras
    entry.mkdir(parents=True, exist_ok=True)
    _write_npy(entry / "data.npy", shape, _reporting(chunks(), total, on_rows))
    write_json(meta_path, {"ident": ident, "data": "data.npy", "shape": list(shape), "extras": extras})
    return read_npy(entry / "data.npy"), extras


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
