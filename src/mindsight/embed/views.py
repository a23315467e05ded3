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

- ``edge``, ``edge-sS``: Canny edges (σ = S, 1 by default) of the grey picture at 224 px, white
  on black (:mod:`mindsight.embed.edges`; CognitionCapturer's edge modality);
- ``depth``, ``depth=MODEL``: a monocular depth model's map coloured with INFERNO at 224 px
  (:mod:`mindsight.embed.depth`; CognitionCapturer's depth modality).

Views compose with ``+``, applied left to right: ``edge+foveated-k45`` is the foveated blur of
the edge map (CognitionCapturer blurs its depth and edge pictures like its images). A
composition's name joins its parts' names; identity parts drop out (``edge+sharp`` is ``edge``).

Stacks name several views at once (``multi-blur``: the 12 levels of the multi-level blur paper;
``ubp``: UBP's low / medium / high levels); :func:`expand_views` turns a list of names into
single views, stacks inside compositions included (``edge+ubp`` → three views). As in both
papers' code, blurred views are computed on the picture resized to 224 × 224 (their
``Image_set_Resize``), so kernel sizes mean the same on any image set.

Every view has two names: ``name``, under which its features are cached, and ``spec``, a name
:func:`get_view` turns back into the same view (they differ only where the name would be a
path: ``depth=/models/da`` is cached as ``depth-<hash>``). Run configurations and level names
keep the ``spec``.

Adding a family of views: one :class:`ImageView` subclass stating its name ``pattern`` and
``example`` and implementing ``transform``, and one ``@VIEWS.register`` line; the registry
checks the class when it is registered.
"""

from __future__ import annotations

import abc
import inspect
import itertools
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from mindsight.errors import ContractError, UnknownNameError
from mindsight.registry import Contract, Registry, import_modules

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


class ImageView(Contract, abc.ABC):
    """A named, deterministic picture → picture function (PIL in, PIL out); one subclass per
    family of names, registered in :data:`VIEWS`.

    A subclass states, as class attributes checked at registration, ``pattern`` (a regular
    expression the family's names match in full; its groups, as strings or None, are the
    constructor's arguments) and ``example`` (how ``mindsight models`` lists the family); its
    constructor sets ``name``, the canonical name under which features are cached (and
    ``spec``, the name that builds the view again, where the two differ), and it implements
    :meth:`transform`, the pixel transform. ``is_identity`` views (``sharp``) are not applied at
    all. A view that needs a model loads it in :meth:`prepare`, not in its constructor, so
    naming a view never loads anything.
    """

    declares: ClassVar[tuple[str, ...]] = ("pattern", "example")
    pattern: ClassVar[str | None] = None
    example: ClassVar[str | None] = None
    is_identity: ClassVar[bool] = False

    def __init__(self, name: str, description: str = "", spec: str | None = None) -> None:
        self.name, self.description = name, description
        self.spec = spec or name

    def prepare(self, device: str = "cpu") -> None:
        """Load what :meth:`transform` needs (a model, on ``device``) before the first picture,
        so unavailable weights fail before any work is done; nothing for pixel-only views."""

    @classmethod
    def from_name(cls, *groups: str | None) -> ImageView:
        """The view of a name of this family, from the pattern's groups; a family some of whose
        names are another view (``blur-0`` is ``sharp``) returns that view."""
        return cls(*groups)

    @abc.abstractmethod
    def transform(self, image: Any) -> Any:
        """The pixel transform: a PIL image → a PIL image."""

    def __call__(self, image: Any) -> Any:
        return image if self.is_identity else self.transform(image)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @classmethod
    def check_contract(cls) -> None:
        """Beyond stating ``pattern`` and ``example``: the pattern is a regular expression and
        its groups fit the constructor's arguments."""
        super().check_contract()
        where = f"{cls.__module__}.{cls.__qualname__}"
        try:
            groups = re.compile(cls.pattern).groups
        except (re.error, TypeError) as exc:
            raise ContractError(f"{where}: pattern {cls.pattern!r} is not a regular expression "
                                f"({exc})") from None
        try:
            inspect.signature(cls.from_name).bind(*[None] * groups)
            inspect.signature(cls).bind(*[None] * groups)
        except TypeError:
            raise ContractError(f"{where}: pattern {cls.pattern!r} has {groups} group(s) but the "
                                f"constructor takes {inspect.signature(cls)}") from None


# families in their own modules register themselves when the registry is first consulted
VIEWS: Registry[ImageView] = Registry("image view", base=ImageView,
                                      load=import_modules("mindsight.embed.edges", "mindsight.embed.depth"))


@VIEWS.register("sharp")
class Sharp(ImageView):
    """The picture as it is."""

    pattern = r"sharp"
    example = "sharp"
    is_identity = True

    def __init__(self) -> None:
        super().__init__("sharp", "the picture as it is")

    def transform(self, image: Any) -> Any:
        return image


@VIEWS.register("blur")
class GaussianBlur(ImageView):
    """Gaussian blur of standard deviation ``sigma`` pixels at 224 px (a kernel of 2·⌈3σ⌉ + 1
    taps)."""

    pattern = r"blur-(\d+(?:\.\d+)?)"
    example = "blur-S (σ in px at 224 px, e.g. blur-4)"

    def __init__(self, sigma: str | float) -> None:
        self.sigma = float(sigma)
        self.kernel = 2 * int(np.ceil(3 * self.sigma)) + 1
        super().__init__(f"blur-{self.sigma:g}", f"Gaussian blur σ = {self.sigma:g} px at 224 px")

    @classmethod
    def from_name(cls, sigma: str) -> ImageView:
        return Sharp() if float(sigma) == 0 else cls(sigma)

    def transform(self, image: Any) -> Any:
        return gaussian_blur(image, self.kernel, self.sigma)


@VIEWS.register("gauss")
class OpenCVGaussianBlur(ImageView):
    """OpenCV's ``GaussianBlur(img, (K, K), 0)`` at 224 px: a ``kernel``-tap Gaussian with
    OpenCV's σ for it."""

    pattern = r"gauss-k(\d+)"
    example = "gauss-kK (OpenCV K-tap kernel at 224 px, e.g. gauss-k21)"

    def __init__(self, kernel: str | int) -> None:
        self.kernel = int(kernel)
        gaussian_kernel(self.kernel)  # odd and positive
        super().__init__(f"gauss-k{self.kernel}", f"OpenCV GaussianBlur, {self.kernel}-tap kernel "
                                                  f"(σ {opencv_sigma(self.kernel):.2f}) at 224 px")

    @classmethod
    def from_name(cls, kernel: str) -> ImageView:
        return Sharp() if int(kernel) == 1 else cls(kernel)

    def transform(self, image: Any) -> Any:
        return gaussian_blur(image, self.kernel)


@VIEWS.register("foveated")
class FoveatedBlur(ImageView):
    """UBP's foveated blur with a ``kernel``-tap Gaussian (51 by default) at 224 px, sharpest at
    the centre."""

    pattern = r"foveated(?:-k(\d+))?"
    example = "foveated, foveated-kK (UBP's foveated blur; K = 51 by default)"

    def __init__(self, kernel: str | int | None = None) -> None:
        self.kernel = int(kernel) if kernel else UBP_KERNEL
        gaussian_kernel(self.kernel)
        name = "foveated" if self.kernel == UBP_KERNEL else f"foveated-k{self.kernel}"
        super().__init__(name, f"UBP's foveated blur, {self.kernel}-tap kernel at 224 px, "
                               "sharpest at the centre")

    def transform(self, image: Any) -> Any:
        return foveated_blur(image, self.kernel)


class ComposedView(ImageView):
    """Views applied one after the other (``edge+foveated-k45``: the edge map, then its foveated
    blur); built by :func:`get_view` from a ``+``-joined name, not registered itself."""

    def __init__(self, parts: Sequence[ImageView]) -> None:
        self.parts = tuple(parts)
        super().__init__("+".join(p.name for p in self.parts),
                         ", then ".join(p.description for p in self.parts),
                         spec="+".join(p.spec for p in self.parts))

    def prepare(self, device: str = "cpu") -> None:
        for part in self.parts:
            part.prepare(device)

    def transform(self, image: Any) -> Any:
        for part in self.parts:
            image = part.transform(image)
        return image


def compose(views: Sequence[ImageView]) -> ImageView:
    """One view applying ``views`` in order; identity views drop out (none left: ``sharp``)."""
    kept = [v for v in views if not v.is_identity]
    if not kept:
        return Sharp()
    return kept[0] if len(kept) == 1 else ComposedView(kept)


def _single(name: str) -> ImageView | None:
    """The view of one family matching ``name`` in full, or None."""
    for entry in VIEWS:
        m = re.fullmatch(entry.factory.pattern, name)
        if m:
            return entry.factory.from_name(*m.groups())
    return None


def _segments(name: str) -> list[str] | None:
    """``name`` split at ``+`` into single view names and stack names, or None if it cannot
    be. A ``+`` may also sit inside one part (a model path of ``depth=PATH``): the first split
    into known parts, shortest first part first, wins."""
    parts = name.split("+")

    def solve(i: int) -> list[str] | None:
        if i == len(parts):
            return []
        for j in range(i + 1, len(parts) + 1):
            seg = "+".join(parts[i:j])
            if seg in STACKS or _single(seg) is not None:
                rest = solve(j)
                if rest is not None:
                    return [seg, *rest]
        return None

    return solve(0)


def _unknown(name: str) -> UnknownNameError:
    return UnknownNameError(f"unknown image view {name!r}; available: {', '.join(view_names())}; "
                            f"stacks: {', '.join(STACKS)}; views compose with '+' (edge+foveated)")


def get_view(name: str) -> ImageView:
    """The view called ``name`` (``+`` composes views, applied left to right); an unknown name
    lists the available families and stacks."""
    view = _single(name)
    if view is not None and "+" not in name:
        return view
    segments = _segments(name)
    if segments is None:
        if view is not None:  # one view whose argument holds a '+' (depth=/models/a+b)
            return view
        raise _unknown(name)
    if any(s in STACKS for s in segments):
        raise UnknownNameError(f"{name!r} names a stack of several views; a single view is needed "
                               f"here (stacks: {', '.join(STACKS)})")
    return compose([_single(s) for s in segments])  # type: ignore[misc]


def canonical(name: str) -> str:
    """The cache name of view ``name`` (``gauss-k1`` and ``blur-0`` are ``sharp``;
    ``foveated-k51`` is ``foveated``; ``depth=PATH`` is ``depth-<hash>``)."""
    return get_view(name).name


def expand_views(names: Sequence[str]) -> list[str]:
    """Single views of ``names`` in order, stacks expanded (``multi-blur`` → 12, ``edge+ubp`` →
    3), each as its ``spec``: the canonical name wherever that name builds the view again."""
    out: list[str] = []
    for name in names:
        segments = _segments(name)
        if segments is None:
            out.append(get_view(name).spec)  # one view with a '+' in it, or an unknown name
            continue
        options = [STACKS.get(s, (s,)) for s in segments]
        for combo in itertools.product(*options):
            out.append(compose([_single(v) for v in combo]).spec)  # type: ignore[misc]
    return out


def view_names() -> list[str]:
    """One line per view family, as ``mindsight models`` lists them."""
    return [entry.factory.example for entry in VIEWS]
