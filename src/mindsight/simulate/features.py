"""Image features at four levels, the simulator's cause of the EEG.

- ``low``: computed from the pixels: an 8 × 8 grey-level thumbnail, the mean colour, contrast
  and edge energy;
- ``mid``: EfficientNet-Lite0's fourth block (80 channels, globally pooled);
- ``high``: EfficientNet-Lite0's 1280-d pooled features;
- ``semantic``: the MiniLM embedding of the concept name.

Each level is reduced by PCA to a few components and z-scored across the image set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

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


def network_levels(paths: Sequence[Path], device: str = "cpu", progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(mid, high) EfficientNet-Lite0 features of every image, one forward pass each."""
    import torch
    from tqdm.auto import tqdm

    from mindsight.embed.base import load_image_embedder

    net = load_image_embedder("efficientnet-lite0", device)
    mids: list[np.ndarray] = []
    hook = net.model.blocks[3].register_forward_hook(
        lambda _m, _i, out: mids.append(out.mean((2, 3)).detach().cpu().numpy()))
    highs = []
    try:
        for start in tqdm(range(0, len(paths), 32), desc="image features", unit="batch", disable=not progress):
            with torch.inference_mode():
                highs.append(net.encode(net.load_batch(paths[start : start + 32])))
    finally:
        hook.remove()
    return np.concatenate(mids), np.concatenate(highs)


def semantic_level(names: Sequence[str], device: str = "cpu") -> np.ndarray:
    from mindsight.embed.base import DEFAULT_TEMPLATE, load_text_embedder

    return load_text_embedder("minilm", device).embed_texts([DEFAULT_TEMPLATE.format(n.replace("_", " ")) for n in names])


def reduce(x: np.ndarray, k: int) -> np.ndarray:
    """First ``k`` principal components, each z-scored."""
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    pcs = u[:, :k] * s[:k]
    return (pcs - pcs.mean(0)) / (pcs.std(0) + 1e-12)


def image_levels(paths: Sequence[Path], concept_names: Sequence[str], device: str = "cpu",
                 progress: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every level's (n_images, k) features for images ``paths`` of concepts ``concept_names``,
    and the full 1280-d EfficientNet-Lite0 embeddings (the default image model's features)."""
    mid, high = network_levels(paths, device, progress)
    uniq, inverse = np.unique(np.asarray(concept_names), return_inverse=True)
    semantic = semantic_level(list(uniq), device)[inverse]
    raw = {"low": low_level(paths), "mid": mid, "high": high, "semantic": semantic}
    levels = {k: reduce(v, min(N_COMPONENTS[k], v.shape[1], len(paths) - 1)) for k, v in raw.items()}
    return levels, high
