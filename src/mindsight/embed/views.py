"""Image views: what the image model is shown, applied to the picture before it is embedded.

The blur-prior methods align the brain with features of *blurred* pictures, since the brain's
response reflects a low-acuity view of them (UBP, Wu et al. CVPR 2025; multi-level blur, Liu et
al. AAAI 2026). A view is a deterministic picture → picture function with a name; features are
cached per (image model, view) (:func:`mindsight.embed.features.image_features`). Names:

- ``sharp``: the picture as it is (every run before the blur methods);
- ``blur-S``: Gaussian blur of standard deviation S pixels at 224 px (``blur-2``, ``blur-4.5``);
- ``gauss-kK``: OpenCV's ``GaussianBlur(img, (K, K), 0)`` at 224 px: a K-tap kernel with
  σ = 0.3·((K − 1)/2 − 1) + 0.8, the levels of the multi-level blur paper (``gauss-k1`` is the
  identity and is the ``sharp`` view);
- ``foveated-kK``: UBP's foveated blur (``base/inpating_data.py: FoveaBlur``): the picture and
  its ``gauss-kK`` blur mixed by a radial mask, sharpest at the centre (fixation) and blurrier
  with eccentricity; ``foveated`` is UBP's medium level, K = 51.

Stacks name several views at once (``multi-blur``: the 12 levels of the multi-level blur paper;
``ubp``: UBP's low / medium / high levels); :func:`expand_views` turns a list of names into
single views. As in both papers' code, blurred views are computed on the picture resized to
224 × 224 (their ``Image_set_Resize``), so kernel sizes mean the same on any image set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mindsight.errors import UnknownNameError

VIEW_SIZE = 224  # px: the size both papers blur at
UBP_KERNEL, UBP_SHIFT = 51, 6  # UBP configs/eeg/ubp.yaml blur_kernel_size; main.py --c
UBP_CENTRE, UBP_FALLOFF = 0.5, 3.0  # FoveaBlur: centre resolution 1 − c (c = 0.5); system_g = 3
MULTI_BLUR_KERNELS = (1, 3, 9, 15, 21, 27, 33, 39, 45, 51, 57, 63)  # preprocess/process_image.py

STACKS: dict[str, tuple[str, ...]] = {
    "multi-blur": tuple("sharp" if k == 1 else f"gauss-k{k}" for k in MULTI_BLUR_KERNELS),
    "ubp": tuple(f"foveated-k{UBP_KERNEL + s}" for s in (-UBP_SHIFT, 0, UBP_SHIFT)),  # low, medium, high
}


def opencv_sigma(kernel: int) -> float:
    """The σ OpenCV's ``GaussianBlur`` uses for a K-tap kernel when asked for σ = 0."""
    return 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8


def gaussian_kernel(kernel: int, sigma: float | None = None) -> np.ndarray:
    """The normalised 1-D Gaussian of ``kernel`` taps (odd) and ``sigma`` (OpenCV's by default)."""
    if kernel < 1 or kernel % 2 == 0:
        raise UnknownNameError(f"blur kernel size must be a positive odd number, got {kernel}")
    sigma = opencv_sigma(kernel) if sigma is None else sigma
    x = np.arange(kernel) - (kernel - 1) / 2
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def blur_array(pixels: np.ndarray, kernel: int, sigma: float | None = None) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) float array, border reflected without repeating
    the edge pixel (OpenCV's default ``BORDER_REFLECT_101``, scipy's ``mirror``)."""
    from scipy.ndimage import correlate1d

    if kernel == 1:
        return pixels
    w = gaussian_kernel(kernel, sigma)
    out = correlate1d(pixels, w, axis=0, mode="mirror")
    return correlate1d(out, w, axis=1, mode="mirror")


@lru_cache(maxsize=8)
def foveation_mask(h: int, w: int, centre: float = UBP_CENTRE, falloff: float = UBP_FALLOFF) -> np.ndarray:
    """UBP's acuity mask: (1 − c)·exp(−g·d) at normalised distance d from the image centre
    (1 at the corner); the weight the sharp picture keeps, the rest going to the blurred one."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h // 2, w // 2
    d = np.hypot(yy - cy, xx - cx) / np.hypot(h - cy - 1, w - cx - 1)
    return ((1 - centre) * np.exp(-falloff * np.minimum(d, 1.0))).astype(np.float64)


def _to_array(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _to_image(pixels: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _resized(image: Any, size: int | None) -> Any:
    from PIL import Image

    image = image.convert("RGB")
    return image if size is None or image.size == (size, size) else image.resize((size, size), Image.BICUBIC)


def gaussian_blur(image: Any, kernel: int, sigma: float | None = None, size: int | None = VIEW_SIZE) -> Any:
    """``image`` resized to ``size`` × ``size`` (None: as it is) and blurred by a ``kernel``-tap
    Gaussian (σ: OpenCV's default for the kernel)."""
    return _to_image(blur_array(_to_array(_resized(image, size)), kernel, sigma))


def foveated_blur(image: Any, kernel: int = UBP_KERNEL, size: int | None = VIEW_SIZE,
                  centre: float = UBP_CENTRE, falloff: float = UBP_FALLOFF) -> Any:
    """UBP's foveated blur: mask·image + (1 − mask)·blur(image) with :func:`foveation_mask`.
    With ``size=None`` the picture keeps its size and the kernel is scaled to it (K·width/224,
    odd), so the blur covers the same share of the picture."""
    image = _resized(image, size)
    px = _to_array(image)
    h, w = px.shape[:2]
    k = kernel if size is not None else max(1, int(round(kernel * w / VIEW_SIZE)) | 1)
    mask = foveation_mask(h, w, centre, falloff)[:, :, None]
    return _to_image(mask * px + (1 - mask) * blur_array(px, k))


@dataclass(frozen=True)
class ImageView:
    """A named picture → picture function (PIL in, PIL out); ``sharp`` is the identity."""

    name: str
    apply: Callable[[Any], Any] | None  # None: the identity
    description: str = ""

    def __call__(self, image: Any) -> Any:
        return image if self.apply is None else self.apply(image)

    @property
    def is_identity(self) -> bool:
        return self.apply is None


_PATTERNS: list[tuple[re.Pattern[str], Callable[..., ImageView], str]] = []


def _view(pattern: str, example: str) -> Callable[[Callable[..., ImageView]], Callable[..., ImageView]]:
    """Register a family of views whose names match ``pattern`` (groups → factory arguments)."""
    def deco(factory: Callable[..., ImageView]) -> Callable[..., ImageView]:
        _PATTERNS.append((re.compile(pattern + r"\Z"), factory, example))
        return factory
    return deco


@_view(r"sharp", "sharp")
def _sharp() -> ImageView:
    return ImageView("sharp", None, "the picture as it is")


@_view(r"blur-(\d+(?:\.\d+)?)", "blur-S (σ in px at 224 px, e.g. blur-4)")
def _blur(sigma: str) -> ImageView:
    s = float(sigma)
    if s == 0:
        return _sharp()
    k = 2 * int(np.ceil(3 * s)) + 1
    name = f"blur-{s:g}"
    return ImageView(name, lambda im: gaussian_blur(im, k, s), f"Gaussian blur σ = {s:g} px at 224 px")


@_view(r"gauss-k(\d+)", "gauss-kK (OpenCV K-tap kernel at 224 px, e.g. gauss-k21)")
def _gauss(kernel: str) -> ImageView:
    k = int(kernel)
    gaussian_kernel(k)  # odd and positive
    if k == 1:
        return _sharp()
    return ImageView(f"gauss-k{k}", lambda im: gaussian_blur(im, k),
                     f"OpenCV GaussianBlur, {k}-tap kernel (σ {opencv_sigma(k):.2f}) at 224 px")


@_view(r"foveated(?:-k(\d+))?", "foveated, foveated-kK (UBP's foveated blur; K = 51 by default)")
def _foveated(kernel: str | None = None) -> ImageView:
    k = int(kernel) if kernel else UBP_KERNEL
    gaussian_kernel(k)
    name = "foveated" if k == UBP_KERNEL else f"foveated-k{k}"
    return ImageView(name, lambda im: foveated_blur(im, k),
                     f"UBP's foveated blur, {k}-tap kernel at 224 px, sharpest at the centre")


def get_view(name: str) -> ImageView:
    """The view called ``name``; an unknown name lists the available families and stacks."""
    for pattern, factory, _ in _PATTERNS:
        m = pattern.match(name)
        if m:
            return factory(*[g for g in m.groups()])
    raise UnknownNameError(f"unknown image view {name!r}; available: {', '.join(view_names())}; "
                           f"stacks: {', '.join(STACKS)}")


def canonical(name: str) -> str:
    """The cache name of view ``name`` (``gauss-k1`` and ``blur-0`` are ``sharp``;
    ``foveated-k51`` is ``foveated``)."""
    return get_view(name).name


def expand_views(names: Sequence[str]) -> list[str]:
    """Canonical single views of ``names`` in order, stacks expanded (``multi-blur`` → 12)."""
    out: list[str] = []
    for name in names:
        out.extend(canonical(v) for v in STACKS.get(name, (name,)))
    return out


def view_names() -> list[str]:
    """One line per view family, as ``mindsight models`` lists them."""
    return [example for _, _, example in _PATTERNS]
