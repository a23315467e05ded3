"""The ``edge`` image view: Canny edge maps, CognitionCapturer's edge modality.

CognitionCapturer(Pro) shows its CLIP model edge pictures of the stimuli next to the pictures
themselves, but ships neither the pictures nor the code that made them. mindsight makes them
with scikit-image's Canny detector: the picture resized to 224 × 224 (the size the papers'
``*_Resize`` folders hold), turned grey (ITU-R 601 luma, ``skimage.color.rgb2gray``), edges at
Gaussian σ = 1 px by default with scikit-image's default hysteresis thresholds (0.1 and 0.2 of
the grey range), drawn white on black as an RGB picture. ``edge-s2`` smooths at σ = 2 (fewer,
coarser edges).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mindsight.embed.views import VIEW_SIZE, VIEWS, ImageView, _resized

DEFAULT_SIGMA = 1.0


def edge_map(image: Any, sigma: float = DEFAULT_SIGMA, size: int | None = VIEW_SIZE) -> np.ndarray:
    """Boolean (H, W) Canny edges of ``image`` (PIL) resized to ``size`` × ``size`` (None: as
    it is), on its grey picture in [0, 1]."""
    from skimage.color import rgb2gray
    from skimage.feature import canny

    grey = rgb2gray(np.asarray(_resized(image, size), dtype=np.float64) / 255.0)
    return canny(grey, sigma=sigma)


@VIEWS.register("edge")
class EdgeView(ImageView):
    """Canny edges of the grey picture at 224 px (σ = 1 px by default), white on black."""

    pattern = r"edge(?:-s(\d+(?:\.\d+)?))?"
    example = "edge, edge-sS (Canny edges at 224 px, Gaussian σ = S px, 1 by default)"

    def __init__(self, sigma: str | float | None = None) -> None:
        self.sigma = DEFAULT_SIGMA if sigma is None else float(sigma)
        if self.sigma <= 0:
            from mindsight.errors import UnknownNameError

            raise UnknownNameError(f"edge view: σ must be positive, got {self.sigma:g} (edge-s1, edge-s2)")
        name = "edge" if self.sigma == DEFAULT_SIGMA else f"edge-s{self.sigma:g}"
        super().__init__(name, f"Canny edges (σ {self.sigma:g} px) of the grey picture at 224 px")

    def transform(self, image: Any) -> Any:
        from PIL import Image

        edges = edge_map(image, self.sigma)
        return Image.fromarray(np.repeat(edges[:, :, None] * np.uint8(255), 3, axis=2))
