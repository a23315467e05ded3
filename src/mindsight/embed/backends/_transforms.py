"""Image preprocessing shared by the backends (torchvision, made importable on CPU-only torch)."""

from __future__ import annotations

from typing import Any

from mindsight._torch_compat import ensure_torchvision

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_crop_normalize(resize: int, crop: int, mean: tuple, std: tuple) -> Any:
    """Resize the short side (bicubic), centre-crop, scale to [0, 1], normalise."""
    ensure_torchvision()
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(crop),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
