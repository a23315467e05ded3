"""The ``depth`` image view: monocular depth maps, CognitionCapturer's depth modality.

CognitionCapturer shows its CLIP model depth pictures of the stimuli: Depth Anything's map of
each picture, min-max scaled to 0–255 and coloured with the INFERNO colormap (near: bright
yellow; far: black), then resized to 224 × 224. mindsight makes the same pictures with any
depth model transformers' ``depth-estimation`` pipeline loads: by default Depth Anything V2
Small (``depth-anything/Depth-Anything-V2-Small-hf``, the small member of the family the
authors used; they ran v1 ViT-B/14 from its own checkpoint), or ``depth=MODEL`` for another
hub id or a local folder in the transformers format.

The pipeline is loaded on first use (:meth:`DepthView.prepare`, or the first picture), once
per (model, device) in the process, so ``depth``, ``depth+foveated-k45`` and ``depth+foveated``
share it. Features of the default model are cached under the view name ``depth``, of another
model under ``depth-<first 10 hex digits of sha256(model)>`` (a path is no folder name); the
view's ``spec`` keeps ``depth=MODEL``. The cache is keyed by the model's name, not its weights:
after replacing the weights in a folder, delete that view's features.

Weights that cannot be had (no network and not in the Hugging Face cache, a folder that is not
there) raise :class:`~mindsight.errors.WeightsUnavailableError` in one line naming the model
and the fix.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mindsight.embed.views import VIEW_SIZE, VIEWS, ImageView, _resized
from mindsight.errors import WeightsUnavailableError

DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"


def depth_view_name(model: str | None) -> str:
    """The cache name of the depth view of ``model`` (None or the default: ``depth``)."""
    if not model or model == DEFAULT_DEPTH_MODEL:
        return "depth"
    return f"depth-{hashlib.sha256(model.encode()).hexdigest()[:10]}"


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def _unavailable(model: str, why: str, local: bool = False) -> WeightsUnavailableError:
    """One line naming the model, why it could not be loaded, and the fix."""
    why = " ".join(why.split())[:300].rstrip(". ")  # one line, whatever the hub's message is
    if local:
        fix = (f"name a folder holding a transformers depth model (config.json, weights, "
               f"preprocessor_config.json: what save_pretrained writes) or a hub id such as "
               f"{DEFAULT_DEPTH_MODEL!r}")
    else:
        fix = (f"download it once where there is network access (`hf download {model}`) and copy "
               "the Hugging Face cache (HF_HOME) here, or name a local folder in the transformers "
               "format: view depth=/path/to/folder")
    return WeightsUnavailableError(f"depth view: cannot load the depth model {model!r} ({why}); "
                                   f"{fix} (--set model.multimodal.depth_model=...)")


@lru_cache(maxsize=2)
def depth_pipeline(model: str = DEFAULT_DEPTH_MODEL, device: str = "cpu") -> Any:
    """transformers' ``depth-estimation`` pipeline of ``model`` (hub id or local folder) on
    ``device``, loaded once per process; :class:`WeightsUnavailableError` when it cannot be."""
    local = Path(model).expanduser()
    if local.exists():
        source = str(local)
    elif _looks_like_path(model):
        raise _unavailable(model, "no such folder", local=True)
    else:
        source = model
    from mindsight._torch_compat import ensure_torchvision

    ensure_torchvision()  # transformers imports torchvision
    from transformers import pipeline

    try:
        return pipeline("depth-estimation", model=source, device=device)
    except Exception as exc:  # hub, network, cache and format errors come in many types
        raise _unavailable(model, f"{type(exc).__name__}: {exc}", local=local.exists()) from None


@lru_cache(maxsize=1)
def inferno_lut() -> np.ndarray:
    """(256, 3) uint8 RGB of matplotlib's INFERNO colormap (OpenCV's COLORMAP_INFERNO is a copy
    of it)."""
    from matplotlib import colormaps

    return np.rint(colormaps["inferno"](np.arange(256))[:, :3] * 255).astype(np.uint8)


def colour_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) depth → (H, W, 3) uint8 INFERNO picture: min-max scaled to 0–255 and truncated
    to integers, as CognitionCapturer's script does (a constant map is all black)."""
    d = np.asarray(depth, dtype=np.float64)
    lo, hi = float(d.min()), float(d.max())
    scaled = (d - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(d)
    return inferno_lut()[scaled.astype(np.uint8)]


@VIEWS.register("depth")
class DepthView(ImageView):
    """A monocular depth model's map, INFERNO-coloured, at 224 px (Depth Anything V2 Small by
    default)."""

    pattern = r"depth(?:=(.+))?"
    example = "depth, depth=MODEL (INFERNO-coloured depth map at 224 px; Depth Anything V2 Small by default, or a hub id / local folder)"

    def __init__(self, model: str | None = None) -> None:
        self.model = model or DEFAULT_DEPTH_MODEL
        self.device = "cpu"
        name = depth_view_name(self.model)
        super().__init__(name, f"{self.model} depth map, INFERNO colours, at 224 px",
                         spec="depth" if name == "depth" else f"depth={self.model}")

    def prepare(self, device: str = "cpu") -> None:
        self.device = device
        depth_pipeline(self.model, device)

    def depth(self, image: Any) -> np.ndarray:
        """The model's (H, W) depth map of ``image`` at the picture's own size."""
        out = depth_pipeline(self.model, self.device)(image.convert("RGB"))
        return np.asarray(out["predicted_depth"].float().cpu().numpy()).squeeze()

    def transform(self, image: Any) -> Any:
        from PIL import Image

        return _resized(Image.fromarray(colour_depth(self.depth(image))), VIEW_SIZE)


def clear_pipelines() -> None:
    """Forget the loaded pipelines (frees their memory; the next picture loads again)."""
    depth_pipeline.cache_clear()

