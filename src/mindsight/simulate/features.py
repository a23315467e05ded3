"""Image features at four levels, the simulator's cause of the EEG.

- ``low``: computed from the pixels: an 8 × 8 grey-level thumbnail, the mean colour, contrast
  and edge energy;
- ``mid``: EfficientNet-Lite0's fourth block (80 channels, globally pooled);
- ``high``: EfficientNet-Lite0's 1280-d pooled features;
- ``semantic``: the MiniLM embedding of the concept name.

Each level is reduced by PCA to a few components and z-scored across the image set.

The perceptual front-end (:func:`perceived_levels`): the brain sees a low-acuity view of the
picture, so the mid- and high-level features can also be computed from foveated blurs of it
(UBP's FoveaBlur, :func:`mindsight.embed.views.foveated_blur`), one array per acuity level,
projected on the PCA basis and z-scoring fitted on the sharp pictures' features so the levels
are comparable. The low level (pixel statistics) and the semantic level are those of the sharp
picture and of the name at every acuity level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.output import progress_bar

N_COMPONENTS = {"low": 8, "mid": 8, "high": 16, "semantic": 16}


def low_level(paths: Sequence[Path]) -> np.ndarray:
    from PIL import Image

    rows = []
    for p in paths:
        img = np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR), dtype=np.float64) / 255
        grey = img.mean(2)
        thumb = grey.reshape(8, 4, 8, 4).mean((1, 3)).ravel()
        edges = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
        rows.append(np.r_[thumb, img.mean((0, 1)), grey.std(), edges])
    return np.asarray(rows)


def network_levels(paths: Sequence[Path], device: str = "cpu",
                   view: Callable[[Any], Any] | None = None, net: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """(mid, high) EfficientNet-Lite0 features of every image, one forward pass each; with
    ``view`` (PIL → PIL, e.g. a blur) of the pictures seen through it, through the same
    transform (resized to 256, 224 centre crop). ``net``: an EfficientNet-Lite0 embedder to reuse."""
    import torch

    from mindsight.embed.base import load_image_embedder, open_image

    net = load_image_embedder("efficientnet-lite0", device) if net is None else net
    mids: list[np.ndarray] = []
    hook = net.model.blocks[3].register_forward_hook(
        lambda _m, _i, out: mids.append(out.mean((2, 3)).detach().cpu().numpy()))
    highs = []
    try:
        for start in progress_bar(range(0, len(paths), 32), desc="image features", unit="batch"):
            batch = paths[start : start + 32]
            if view is not None:
                batch = [view(open_image(p)) for p in batch]
            with torch.inference_mode():
                highs.append(net.encode(net.load_batch(batch)))
    finally:
        hook.remove()
    return np.concatenate(mids), np.concatenate(highs)


def semantic_level(names: Sequence[str], device: str = "cpu") -> np.ndarray:
    from mindsight.embed.base import DEFAULT_TEMPLATE, load_text_embedder

    return load_text_embedder("minilm", device).embed_texts([DEFAULT_TEMPLATE.format(n.replace("_", " ")) for n in names])


@dataclass(frozen=True)
class Reduction:
    """A PCA basis and z-scoring fitted on one set of features, to apply to others."""

    mean: np.ndarray  # (d,) the fitted features' mean
    components: np.ndarray  # (d, k) principal axes
    centre: np.ndarray  # (k,) mean of the fitted components
    scale: np.ndarray  # (k,) their standard deviation (+ 1e-12)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components - self.centre) / self.scale


def fit_reduce(x: np.ndarray, k: int) -> tuple[np.ndarray, Reduction]:
    """First ``k`` principal components of ``x``, each z-scored, and the fitted reduction."""
    mean = x.mean(0)
    x = x - mean
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    pcs = u[:, :k] * s[:k]
    centre, scale = pcs.mean(0), pcs.std(0) + 1e-12
    return (pcs - centre) / scale, Reduction(mean, vt[:k].T, centre, scale)


def reduce(x: np.ndarray, k: int) -> np.ndarray:
    """First ``k`` principal components, each z-scored."""
    return fit_reduce(x, k)[0]


def acuity_view(kernel: int) -> Any:
    """UBP's foveated blur with a ``kernel``-tap Gaussian at 224 px: the image view
    ``foveated-k<kernel>`` (:mod:`mindsight.embed.views`), so the features the simulator computes
    for its front-end are exactly a decoder's features of that view (and are cached as such)."""
    from mindsight.embed.views import get_view

    return get_view(f"foveated-k{kernel}")


def image_levels(paths: Sequence[Path], concept_names: Sequence[str],
                 device: str = "cpu") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every level's (n_images, k) features for images ``paths`` of concepts ``concept_names``,
    and the full 1280-d EfficientNet-Lite0 embeddings (the default image model's features)."""
    levels, views, _ = perceived_levels(paths, concept_names, (), device)
    return levels, views["sharp"]


FRONT_END_LEVELS = ("mid", "high")  # the feature levels computed from the low-acuity view


def perceived_levels(paths: Sequence[Path], concept_names: Sequence[str], acuity_kernels: Sequence[int] = (),
                     device: str = "cpu") -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The sharp pictures' levels (as :func:`image_levels`); the full 1280-d EfficientNet-Lite0
    embeddings of the pictures through each view (``sharp`` and each acuity view's name); and
    every level's features as seen at each
    acuity level: (n_acuity, n_images, k) arrays, the mid and high levels computed from
    :func:`acuity_view` ``(kernel)`` of the picture for each of ``acuity_kernels`` and projected
    on the sharp pictures' PCA basis and z-scoring, the low and semantic levels the sharp ones.
    Without kernels the one acuity level is the sharp picture."""
    from mindsight.embed.base import load_image_embedder

    net = load_image_embedder("efficientnet-lite0", device)
    mid, high = network_levels(paths, device, net=net)
    uniq, inverse = np.unique(np.asarray(concept_names), return_inverse=True)
    semantic = semantic_level(list(uniq), device)[inverse]
    raw = {"low": low_level(paths), "mid": mid, "high": high, "semantic": semantic}
    fitted = {k: fit_reduce(v, min(N_COMPONENTS[k], v.shape[1], len(paths) - 1)) for k, v in raw.items()}
    levels = {k: z for k, (z, _) in fitted.items()}
    views = {"sharp": high}
    if not acuity_kernels:
        return levels, views, {k: v[None] for k, v in levels.items()}
    seen: dict[str, list[np.ndarray]] = {k: [] for k in levels}
    for kernel in acuity_kernels:
        view = acuity_view(kernel)
        blurred = dict(zip(FRONT_END_LEVELS, network_levels(paths, device, view, net),
                           strict=True))
        views[view.name] = blurred["high"]
        for k, v in levels.items():
            seen[k].append(fitted[k][1](blurred[k]) if k in blurred else v)
    return levels, views, {k: np.stack(v) for k, v in seen.items()}
