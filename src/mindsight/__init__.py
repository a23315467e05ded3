"""mindsight: decode what a person sees from EEG/MEG.

The top level is light (numpy only). The readers are imported here; the run API and the
registries, which need torch, are imported on first use (``mindsight.Run``,
``mindsight.ENCODERS``, ...)::

    import mindsight as ms

    rec = ms.read_recording("/data/EEG-ImageNet.pth", subject=1, partition="train",
                            images=ms.read_images("/data/EEG-ImageNet.pth", "/data/imagenet"))
    run = ms.Run.open("runs/atm")               # a trained run: config, folds, models, images
    ms.ENCODERS.names(), ms.DATASETS.names(), ms.ANALYSES.names()

Every kind of extension is a registry of classes with a contract checked when the class is
registered; CONTRIBUTING.md says what one new file and one registry line each needs.
"""

from importlib import import_module
from typing import Any

from mindsight.io import (
    dataset_for,
    find_dataset,
    read_image_set,
    read_images,
    read_recording,
    read_things_eeg2,
    read_things_eeg2_subject,
)
from mindsight.recording import Recording, Trials

__version__ = "0.1.0"

# name → module: imported on first access (PEP 562), so `import mindsight` needs no torch
_LAZY = {
    "Run": "mindsight.run",
    "DATASETS": "mindsight.io.datasets",
    "Dataset": "mindsight.io.datasets",
    "ENCODERS": "mindsight.encoders",
    "BrainEncoder": "mindsight.encoders",
    "EMBEDDERS": "mindsight.embed.base",
    "VIEWS": "mindsight.embed.views",
    "IMAGE_SIDES": "mindsight.train.image_side",
    "GENERATORS": "mindsight.generate.base",
    "ANALYSES": "mindsight.analysis",
    "Analysis": "mindsight.analysis",
    "RunConfig": "mindsight.config",
    "set_progress": "mindsight.output",
    "logger": "mindsight.output",
}

def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mindsight' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Recording",
    "Trials",
    "__version__",
    "dataset_for",
    "find_dataset",
    "read_image_set",
    "read_images",
    "read_recording",
    "read_things_eeg2",
    "read_things_eeg2_subject",
    *_LAZY,
]
