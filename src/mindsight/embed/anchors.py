"""Import the image/text feature files researchers already have from the anchor projects.

- ATM: ``{model}_features_{train,test}.pt`` = ``{'img_features': (n_images, d),
  'text_features': (n_concepts, d)}`` (open_clip ViT-H-14, L2-normalised, prompt
  "This picture is {concept}").
- NICE: ``clip_feature_maps_{training,test}.npy`` of shape (n_images, 1, 768) (OpenAI ViT-L/14).
- things-eeg2-dataset: ``{model}_features_{training,test}[_variant].safetensors`` with
  ``img_features`` and ``text_features`` (concept names without a prompt).

Imported tables go into the same cache as extracted ones, keyed by the image set they belong to,
so training finds them by model name (``--image-model clip-vit-h-14``) without the hub.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindsight.embed.base import DEFAULT_TEMPLATE
from mindsight.embed.features import FeatureTable, cache_path, text_fingerprint
from mindsight.errors import DataFormatError
from mindsight.io.containers import read_npy
from mindsight.io.images import ImageSet

# the anchors' model names → mindsight's registry names
MODEL_NAMES = {
    "ViT-H-14": "clip-vit-h-14",
    "openai-clip-vit-l-14": "clip-vit-l-14",
    "ViT-L-14": "clip-vit-l-14",
}

_ATM = re.compile(r"^(?P<model>.+)_features_(?P<part>train|test)\.pt$")
_NICE = re.compile(r"^clip_feature_maps_(?P<part>training|test)\.npy$")
_PACKAGE = re.compile(r"^(?P<model>.+?)_features_(?P<part>training|test)(?P<suffix>_[A-Za-z0-9_]+)?\.safetensors$")


@dataclass(frozen=True)
class AnchorFile:
    path: Path
    source: str  # 'atm', 'nice', 'things-eeg2-dataset'
    model: str  # mindsight name
    partition: str
    template: str | None


def recognise(path: str | os.PathLike) -> AnchorFile | None:
    """What anchor feature file ``path`` is, from its name; None if it is none of them."""
    path = Path(path)
    if m := _ATM.match(path.name):
        model = MODEL_NAMES.get(m["model"], f"atm-{m['model']}")
        return AnchorFile(path, "atm", model, m["part"], DEFAULT_TEMPLATE)
    if m := _NICE.match(path.name):
        return AnchorFile(path, "nice", "clip-vit-l-14", "train" if m["part"] == "training" else "test", None)
    if m := _PACKAGE.match(path.name):
        if m["suffix"] and "full" in m["suffix"]:
            return AnchorFile(path, "things-eeg2-dataset-full", m["model"], "", None)
        model = MODEL_NAMES.get(m["model"], m["model"])
        part = "train" if m["part"] == "training" else "test"
        return AnchorFile(path, "things-eeg2-dataset", model, part, "{}")
    return None


def _read(anchor: AnchorFile) -> tuple[np.ndarray, np.ndarray | None]:
    path = anchor.path
    if anchor.source == "atm":
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataFormatError(f"{path}: cannot read as a torch file ({exc})") from None
        if not isinstance(obj, dict) or "img_features" not in obj:
            keys = list(obj) if isinstance(obj, dict) else type(obj).__name__
            raise DataFormatError(f"{path}: expected a dict with 'img_features'; found {keys}")
        img = obj["img_features"].float().numpy()
        txt = obj["text_features"].float().numpy() if "text_features" in obj else None
        return img, txt
    if anchor.source == "nice":
        arr = np.asarray(read_npy(path), dtype=np.float32)
        if arr.ndim == 3 and arr.shape[1] == 1:
            arr = arr[:, 0]
        return arr, None
    if anchor.source == "things-eeg2-dataset":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as fh:
                keys = list(fh.keys())
                if "img_features" not in keys:
                    raise DataFormatError(f"{path}: no 'img_features' key; keys are {keys}")
                img = fh.get_tensor("img_features").astype(np.float32)
                txt = fh.get_tensor("text_features").astype(np.float32) if "text_features" in keys else None
        except DataFormatError:
            raise
        except Exception as exc:
            raise DataFormatError(f"{path}: cannot read as safetensors ({exc})") from None
        return img, txt
    raise DataFormatError(
        f"{path}: token-level ('_full') embeddings are not supported; import the pooled file"
    )


def import_features(
    path: str | os.PathLike,
    images: ImageSet,
    *,
    model: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    view: str = "sharp",
) -> list[tuple[FeatureTable, Path]]:
    """Import one anchor feature file into the feature cache; returns the tables and their paths.
    ``view``: the image view the file's image features were computed through (e.g. a blur level
    of the multi-level blur paper's ``MultiBlur_*`` files, exported one level per file)."""
    from mindsight.embed.views import canonical

    view = canonical(view)
    anchor = recognise(path)
    if anchor is None:
        raise DataFormatError(
            f"{path}: not a recognised feature file; expected ATM '<model>_features_{{train,test}}.pt', "
            "NICE 'clip_feature_maps_{training,test}.npy' or things-eeg2-dataset "
            "'<model>_features_{training,test}[_variant].safetensors'"
        )
    img, txt = _read(anchor)
    name = model or anchor.model
    part = images[anchor.partition]
    if img.ndim != 2 or img.shape[0] != len(part):
        raise DataFormatError(
            f"{anchor.path}: image features of shape {img.shape}, but the image set at "
            f"{part.root} has {len(part)} {anchor.partition} images; expected ({len(part)}, dim)"
        )
    if not np.isfinite(img).all():
        raise DataFormatError(f"{anchor.path}: image features hold NaN/Inf")
    meta = {"source": anchor.source, "file": str(anchor.path), "view": view,
            "normalized": bool(np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-3))}
    fp = part.fingerprint()
    table = FeatureTable(img, part.files, name, "image", fp, meta=meta)
    written = [(table, table.save(cache_path(name, "image", fp, cache_dir, view)))]
    if txt is not None:
        names = part.concept_names
        if txt.ndim != 2 or txt.shape[0] != len(names):
            raise DataFormatError(
                f"{anchor.path}: text features of shape {txt.shape}, but the image set has "
                f"{len(names)} {anchor.partition} concepts"
            )
        template = anchor.template or "{}"
        tfp = text_fingerprint(names, template)
        ttable = FeatureTable(txt, names, name, "text", tfp, meta={**meta, "template": template})
        written.append((ttable, ttable.save(cache_path(name, "text", tfp, cache_dir))))
    return written
