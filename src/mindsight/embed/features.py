"""Embedding tables and their on-disk cache.

A :class:`FeatureTable` is an (n, dim) float32 matrix whose rows follow a list of keys (image
paths relative to the image set, or concept names), plus the model that produced it and a
fingerprint of the key list. Tables are cached as safetensors under
``<cache>/features/<model>/<modality>-<fingerprint>.safetensors`` (and, for image views other
than ``sharp``, ``<cache>/features/<model>/<view>/image-<fingerprint>.safetensors``): a cache
made for another image list has another fingerprint and is never picked up, and a loaded table
is checked against the fingerprint it was asked for. The view folder is the view's cache name
(:attr:`~mindsight.embed.views.ImageView.name`: ``edge+foveated-k45``, ``depth-<hash>`` for
``depth=PATH``).

A run's *levels* are named ``model@view`` (an image model through an image view) or
``model@text`` (a text model on each image's concept name, ``This picture is {}``);
:func:`level_tables` builds them, rows in the partition's image order.

Extraction is batched, shows a progress bar, loads the next batch in a background thread while
the model runs, and checkpoints its progress, so an interrupted extraction resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindsight._atomic import atomic_path, write_json
from mindsight.embed.base import (
    DEFAULT_IMAGE_MODEL,
    DEFAULT_TEMPLATE,
    DEFAULT_TEXT_MODEL,
    ImageEmbedder,
    TextEmbedder,
    load_image_embedder,
    load_text_embedder,
    open_image,
)
from mindsight.embed.views import ImageView, expand_views, get_view
from mindsight.errors import DataFormatError, MissingFileError, WeightsUnavailableError
from mindsight.io.cache import default_cache_dir
from mindsight.io.images import ImagePartition
from mindsight.output import logger, progress_bar

CHECKPOINT_SECONDS = 30.0
TEXT_LEVEL = "text"  # the "view" of a text level: model@text


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """Embeddings ``features[i]`` of ``keys[i]``, made by ``model``."""

    features: np.ndarray
    keys: tuple[str, ...]
    model: str
    modality: str  # 'image' or 'text'
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        feats = np.asarray(self.features, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != len(self.keys):
            raise DataFormatError(
                f"{self.model} {self.modality} features have shape {feats.shape} for "
                f"{len(self.keys)} keys; expected ({len(self.keys)}, dim)"
            )
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "keys", tuple(self.keys))

    @property
    def dim(self) -> int:
        return self.features.shape[1]

    def __len__(self) -> int:
        return len(self.keys)

    def normalized(self) -> np.ndarray:
        """Rows scaled to unit L2 norm (cosine similarity becomes a dot product)."""
        norm = np.linalg.norm(self.features, axis=1, keepdims=True)
        return self.features / np.maximum(norm, 1e-12)

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        meta = {
            "model": self.model, "modality": self.modality, "fingerprint": self.fingerprint,
            "keys": json.dumps(list(self.keys)), "meta": json.dumps(self.meta),
        }
        with atomic_path(path) as tmp:
            save_file({"features": self.features}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureTable:
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
                features = fh.get_tensor("features")
            return cls(
                features=features, keys=tuple(json.loads(meta["keys"])), model=meta["model"],
                modality=meta["modality"], fingerprint=meta["fingerprint"],
                meta=json.loads(meta.get("meta", "{}")),
            )
        except DataFormatError:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise DataFormatError(f"{path}: not a mindsight feature table ({exc})") from None


def text_fingerprint(names: Sequence[str], template: str) -> str:
    h = hashlib.sha256(template.encode() + b"\x00")
    for n in names:
        h.update(n.encode() + b"\n")
    return h.hexdigest()


def cache_path(model: str, modality: str, fingerprint: str, cache_dir: str | os.PathLike | None = None,
               view: str = "sharp") -> Path:
    """Where a table is cached: ``features/<model>[/<view>]/<modality>-<fingerprint>`` (the
    ``sharp`` view, what every table was before views existed, has no view folder)."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / "features" / model
    if view != "sharp":
        folder = folder / view
    return folder / f"{modality}-{fingerprint[:24]}.safetensors"


def _cached(path: Path, fingerprint: str, keys: Sequence[str]) -> FeatureTable | None:
    if not path.is_file():
        return None
    table = FeatureTable.load(path)
    if table.fingerprint != fingerprint or table.keys != tuple(keys):
        raise DataFormatError(
            f"{path}: cached features belong to a different list of {len(table.keys)} items; "
            "delete the file to rebuild it"
        )
    return table


def as_view(view: str | ImageView) -> ImageView:
    """``view`` itself, or the view a name builds (:func:`mindsight.embed.views.get_view`)."""
    return view if isinstance(view, ImageView) else get_view(view)


def image_features(
    partition: ImagePartition,
    model: str = DEFAULT_IMAGE_MODEL,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    embedder: ImageEmbedder | None = None,
    view: str | ImageView = "sharp",
) -> FeatureTable:
    """Embeddings of every image of ``partition`` (rows in EEG condition order) as seen through
    image view ``view`` (:mod:`mindsight.embed.views`; a name or a view), cached per (model,
    view name). The view is resolved once and that object transforms the pictures, so a name
    whose cache name cannot be parsed back (``depth=PATH`` → ``depth-<hash>``) still works."""
    view = as_view(view)
    name = view.name
    fingerprint = partition.fingerprint()
    path = cache_path(model, "image", fingerprint, cache_dir, name)
    if (table := _cached(path, fingerprint, partition.files)) is not None:
        return table
    if embedder is None:
        try:
            embedder = load_image_embedder(model, device)
        except WeightsUnavailableError as exc:
            if name != "sharp" and cache_path(model, "image", fingerprint, cache_dir).is_file():
                raise MissingFileError(
                    f"{partition.root}: the {model} features of the {partition.name} images were "
                    f"imported for the sharp view only; view {view.spec!r} has none and {model}'s weights "
                    f"cannot be loaded here ({exc}). Compute them where the weights are: "
                    f"`mindsight embed --images DIR --image-model {model} --view {view.spec}`, or import "
                    f"them: `mindsight import-features FILE --images DIR --view {view.spec}`"
                ) from None
            raise
    view.prepare(device)  # a view's own model (depth) fails here, before any work
    feats = _extract_resumable(embedder, partition.paths, path, fingerprint, batch_size,
                               desc=f"{model} {name + ' ' if name != 'sharp' else ''}{partition.name} images",
                               view=view)
    table = store_image_features(partition, model, feats, cache_dir, view=view)
    _clear_partial(path)
    return table


def level_names(image_model: str, views: Sequence[str], extra_models: Sequence[str] = ()) -> list[str]:
    """``model@view`` names of the levels a run aligns with: ``image_model`` through each of
    ``views`` (stacks expanded), then each of ``extra_models`` through the sharp view."""
    return [f"{image_model}@{v}" for v in expand_views(views)] + [f"{m}@sharp" for m in extra_models]


def level_tables(partition: ImagePartition, levels: Sequence[str], *,
                 cache_dir: str | os.PathLike | None = None, device: str = "cpu") -> list[FeatureTable]:
    """The feature table of each level of ``partition``, rows in its image order: ``model@view``
    (image features through a view, cached per level) or ``model@text`` (:func:`text_level`)."""
    out = []
    for level in levels:
        model, _, view = level.partition("@")
        if view == TEXT_LEVEL:
            out.append(text_level(partition, model, cache_dir=cache_dir, device=device))
        else:
            out.append(image_features(partition, model, cache_dir=cache_dir, device=device, view=view or "sharp"))
    return out


def text_level(partition: ImagePartition, model: str = DEFAULT_TEXT_MODEL, template: str = DEFAULT_TEMPLATE,
               *, cache_dir: str | os.PathLike | None = None, device: str = "cpu") -> FeatureTable:
    """The ``model@text`` level: ``model``'s embedding of each image's concept name through
    ``template``, one row per image in ``partition`` order (images of one concept share a row).

    The concept table is :func:`optional_text_features`'s (cached per concept list and
    template; without weights, a table imported under another prompt); only unavailable weights
    with nothing imported raise :class:`WeightsUnavailableError`."""
    names = partition.concept_names
    table, reason = optional_text_features(names, model, template, cache_dir=cache_dir, device=device)
    if table is None:
        raise WeightsUnavailableError(
            f"text level {model}@{TEXT_LEVEL}: {reason}; run once where {model}'s weights can be "
            f"loaded (`mindsight embed --images DIR --text-model {model}`), or import its text "
            "features with `mindsight import-features`")
    used = table.meta.get("template", template)
    if used != template:
        logger.info("text level %s@%s: no %s weights here; using text features imported under the "
                    "prompt %r instead of %r", model, TEXT_LEVEL, model, used, template)
    return FeatureTable(table.features[np.asarray(partition.concept)], partition.files, model, "text",
                        partition.fingerprint(),
                        meta={"source": "text", "level": f"{model}@{TEXT_LEVEL}", "template": used,
                              "concepts": table.fingerprint, "normalized": False})


def store_image_features(partition: ImagePartition, model: str, features: np.ndarray,
                         cache_dir: str | os.PathLike | None = None,
                         view: str | ImageView = "sharp") -> FeatureTable:
    """Cache ``features`` (rows in ``partition`` order) as ``model``'s embeddings of it through
    ``view``, where :func:`image_features` finds them (used when they were computed elsewhere,
    e.g. by the simulator)."""
    view = as_view(view)
    fingerprint = partition.fingerprint()
    meta = {"source": "extracted", "normalized": False, "image_root": str(partition.root), "view": view.name}
    if view.spec != view.name:
        meta["view_spec"] = view.spec
    table = FeatureTable(features, partition.files, model, "image", fingerprint, meta=meta)
    table.save(cache_path(model, "image", fingerprint, cache_dir, view.name))
    return table


def text_features(
    names: Sequence[str],
    model: str = DEFAULT_TEXT_MODEL,
    template: str = DEFAULT_TEMPLATE,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    embedder: TextEmbedder | None = None,
) -> FeatureTable:
    """Embeddings of ``template.format(name)`` for each concept name, cached; keys are the names."""
    fingerprint = text_fingerprint(names, template)
    path = cache_path(model, "text", fingerprint, cache_dir)
    if (table := _cached(path, fingerprint, names)) is not None:
        return table
    embedder = embedder or load_text_embedder(model, device)
    feats = embedder.embed_texts([template.format(n) for n in names])
    table = FeatureTable(feats, tuple(names), model, "text", fingerprint,
                         meta={"source": "extracted", "template": template, "normalized": False})
    table.save(path)
    return table


IMPORTED_TEMPLATES = ("{}",)  # prompts other importers store names under (things-eeg2-dataset)


def optional_text_features(
    names: Sequence[str],
    model: str = DEFAULT_TEXT_MODEL,
    template: str = DEFAULT_TEMPLATE,
    *,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
) -> tuple[FeatureTable | None, str | None]:
    """``(table, None)`` when ``model``'s text features of ``names`` can be had, else
    ``(None, reason)``.

    Retrieval needs only image features, so a user who imported image features but has no
    weights for the text tower (a cluster without internet) must still be able to train and
    evaluate. Order: the cache under ``template`` (extracted before, or imported from ATM's
    ``.pt`` files), the model itself, then a table imported under another prompt (the bare
    names of things-eeg2-dataset). Only unavailable weights turn into ``None``; every other
    error (unknown name, corrupt cache) still stops.
    """
    try:
        return text_features(names, model, template, cache_dir=cache_dir, device=device), None
    except WeightsUnavailableError:
        pass
    for other in IMPORTED_TEMPLATES:
        fingerprint = text_fingerprint(names, other)
        table = _cached(cache_path(model, "text", fingerprint, cache_dir), fingerprint, names)
        if table is not None:
            return table, None
    return None, f"no {model} text features (weights unavailable and none imported)"


def _partial_paths(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + ".partial.npy"), path.with_name(path.name + ".partial.json")


def _clear_partial(path: Path) -> None:
    for p in _partial_paths(path):
        p.unlink(missing_ok=True)


def _extract_resumable(
    embedder: ImageEmbedder, paths: Sequence[Path], target: Path, fingerprint: str,
    batch_size: int | None, desc: str, view: ImageView | None = None,
) -> np.ndarray:
    def load(batch: Sequence[Path]) -> Any:
        if view is None or view.is_identity:
            return embedder.load_batch(batch)
        return embedder.load_batch([view(open_image(p)) for p in batch])

    n, bs = len(paths), batch_size or embedder.batch_size
    data_path, state_path = _partial_paths(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    if data_path.is_file() and state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") == fingerprint and state.get("shape") == [n, embedder.dim]:
            done = int(state["done"])
    if done:
        out = np.lib.format.open_memmap(data_path, mode="r+")
    else:
        out = np.lib.format.open_memmap(data_path, mode="w+", dtype=np.float32, shape=(n, embedder.dim))
    starts = list(range(done, n, bs))
    last_save = time.monotonic()
    bar = progress_bar(total=n, initial=done, desc=desc, unit="img")
    with ThreadPoolExecutor(max_workers=1) as pool:  # decode the next batch while this one runs
        pending = pool.submit(load, paths[starts[0]: starts[0] + bs]) if starts else None
        for i, start in enumerate(starts):
            pixels = pending.result()
            if i + 1 < len(starts):
                nxt = starts[i + 1]
                pending = pool.submit(load, paths[nxt: nxt + bs])
            stop = min(n, start + bs)
            feats = embedder.encode(pixels)
            if feats.shape != (stop - start, embedder.dim):
                raise DataFormatError(
                    f"{embedder.name} returned shape {feats.shape} for {stop - start} images; "
                    f"expected ({stop - start}, {embedder.dim})"
                )
            out[start:stop] = feats
            bar.update(stop - start)
            if time.monotonic() - last_save > CHECKPOINT_SECONDS or stop == n:
                out.flush()
                write_json(state_path, {"fingerprint": fingerprint, "shape": [n, embedder.dim], "done": stop})
                last_save = time.monotonic()
    bar.close()
    return np.array(out)
