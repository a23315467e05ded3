"""The trained object: an input scaler, a brain encoder, the loss's temperature and an optional
text head.

:class:`AlignmentModel` is built from a JSON-able :class:`ModelSpec`, so a checkpoint (weights +
spec) rebuilds the same network in ``evaluate`` without the training configuration. The input
scaler's statistics are buffers of the model, so every reader of brain data (evaluation, the
analyses, reconstruction) scales exactly as training did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from mindsight.encoders import build_encoder, needs_ch_names
from mindsight.errors import ConfigError
from mindsight.train.image_side import build_image_side
from mindsight.train.losses import ContrastiveLoss
from mindsight.train.scaler import InputScaler


@dataclass
class ModelSpec:
    encoder: str
    n_chans: int
    n_times: int
    sfreq: float
    n_outputs: int  # image-embedding size
    params: dict[str, Any] = field(default_factory=dict)
    text_dim: int | None = None  # size of a separate text head's output (None: no head)
    clip_weight: float = 0.9
    text_weight: float = 0.0
    temperature: float = 0.07
    learn_temperature: bool = True
    ch_names: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # epoch times in seconds
    subjects: list[int] = field(default_factory=list)  # subject ids with their own token
    image_model: str = ""
    text_model: str | None = None
    scaler: str = "none"  # input scaler (mindsight.train.scaler); 'none' in pre-scaler checkpoints
    clamp: float | None = None
    mse_weight: float | None = None  # None: 1 − clip_weight
    logit_scale: str = "exp"
    normalize_brain: bool = True
    text_loss: str = "concepts"
    levels: list[str] = field(default_factory=list)  # 'model@view' feature levels (empty: image_model@sharp)
    level_dims: list[int] = field(default_factory=list)  # their sizes (empty: [n_outputs])
    image_side: str = "fixed"  # levels → targets (mindsight.train.image_side)
    image_side_params: dict[str, Any] = field(default_factory=dict)
    n_pairs: int = 0  # training samples (the state of image sides that track pairs, e.g. ubp)

    def level_list(self) -> list[str]:
        return list(self.levels) or [f"{self.image_model}@sharp"]

    def level_dim_list(self) -> list[int]:
        return list(self.level_dims) or [self.n_outputs]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelSpec:
        return cls(**raw)


class AlignmentModel(nn.Module):
    """scaler(x) → encoder → image embedding; text_head(embedding) → concept-name embedding
    (optional); image_side(levels) → the targets the image embedding aligns with (the image
    features as they are, or a blur prior: :mod:`mindsight.train.image_side`). ``x`` is brain
    data in the unit of the training files.

    Encoders that need the channel names (``needs_ch_names``) get ``spec.ch_names``; encoders
    with subject layers get ``n_subjects`` when ``spec.subjects`` lists subjects. A two-head
    encoder (``two_heads``: the brain module) has a CLIP head and an MSE head: the loss's CLIP
    term reads the first and its MSE term the second (:meth:`heads`); retrieval uses the first.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        params = dict(spec.params)
        if spec.subjects:
            params["n_subjects"] = len(spec.subjects)
        if needs_ch_names(spec.encoder):  # e.g. the brain module's spatial attention
            params["ch_names"] = list(spec.ch_names) or None
        self.scaler = InputScaler(spec.n_chans, spec.scaler, spec.clamp)
        self.encoder = build_encoder(spec.encoder, n_chans=spec.n_chans, n_times=spec.n_times,
                                     sfreq=spec.sfreq, n_outputs=spec.n_outputs, **params)
        self.two_heads = bool(self.encoder.two_heads)  # a separate MSE head (forward_heads)
        self.text_head = nn.Linear(spec.n_outputs, spec.text_dim) if spec.text_dim else None
        self.image_side = build_image_side(spec.image_side, spec.level_dim_list(),
                                           spec.n_outputs, spec.n_pairs, **spec.image_side_params)
        self.loss = ContrastiveLoss(spec.clip_weight, spec.text_weight, spec.temperature,
                                    spec.learn_temperature, mse_weight=spec.mse_weight,
                                    logit_scale=spec.logit_scale,
                                    normalize_brain=spec.normalize_brain, text_loss=spec.text_loss)

    def subject_index(self, subjects: torch.Tensor) -> torch.Tensor:
        """Map subject ids to token indices; subjects without a token get -1 (the mean token)."""
        out = torch.full_like(subjects, -1)
        for i, s in enumerate(self.spec.subjects):
            out[subjects == s] = i
        return out

    def _inputs(self, x: torch.Tensor, subject: torch.Tensor | None) -> tuple:
        x = self.scaler(x)
        if self.spec.subjects:
            return x, (None if subject is None else self.subject_index(subject))
        return (x,)

    def _text(self, emb: torch.Tensor) -> torch.Tensor:
        return self.text_head(emb) if self.text_head is not None else emb

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(image-space embedding, text-space embedding) of epochs ``x`` from subject ids
        ``subject``. The two are the same tensor when there is no text head (the image model
        has its own text tower). With a two-head encoder the image-space embedding is its CLIP
        head's."""
        emb = self.encoder(*self._inputs(x, subject))
        return emb, self._text(emb)

    def heads(self, x: torch.Tensor, subject: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(CLIP-head embedding, text-space embedding, MSE-head embedding): what the loss
        takes. Single-head encoders return their one embedding as both heads."""
        if not self.two_heads:
            emb, txt = self(x, subject)
            return emb, txt, emb
        emb, mse = self.encoder.forward_heads(*self._inputs(x, subject))
        return emb, self._text(emb), mse

    @torch.no_grad()
    def embed(self, x: torch.Tensor, subject: torch.Tensor | None = None,
              batch_size: int = 1024, head: str = "clip") -> tuple[torch.Tensor, torch.Tensor]:
        """Both embeddings of many trials, in eval mode, batch by batch. ``head='mse'`` gives
        the MSE head's image-space embedding (what generation wants) instead of the CLIP head's;
        the text-space embedding is always the CLIP head's. Single-head encoders ignore it."""
        if head not in ("clip", "mse"):
            raise ConfigError(f"embed: head must be 'clip' or 'mse', got {head!r}")
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        img, txt = [], []
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(dev, non_blocking=True)
            sb = None if subject is None else subject[start : start + batch_size].to(dev)
            if head == "mse" and self.two_heads:
                _, t, e = self.heads(xb, sb)
            else:
                e, t = self(xb, sb)
            img.append(e.float())
            txt.append(t.float())
        self.train(was)
        return torch.cat(img), torch.cat(txt)

    @torch.no_grad()
    def image_table(self, levels: list[torch.Tensor], batch_size: int = 4096) -> torch.Tensor:
        """The evaluation targets (n_images, n_outputs) of images with feature ``levels`` (one
        (n_images, dim) tensor per level): what retrieval ranks brain embeddings against."""
        was = self.image_side.training
        self.image_side.eval()
        n = len(levels[0])
        out = torch.cat([self.image_side([lv[i : i + batch_size] for lv in levels])
                         for i in range(0, n, batch_size)]) if n else levels[0][:, : self.spec.n_outputs]
        self.image_side.train(was)
        return out.float()

    def train_targets(self, levels: list[torch.Tensor], images: torch.Tensor, pairs: torch.Tensor,
                      brain: torch.Tensor) -> torch.Tensor:
        """Training targets of a batch: samples ``pairs`` showing image rows ``images``, with
        brain embeddings ``brain`` (CLIP head); image sides that adapt to each pair's match
        (UBP) see the pair logits here."""
        target = self.image_side.train_targets([lv[images] for lv in levels], pairs)
        if self.image_side.observes:
            self.image_side.observe(pairs, self.loss.pair_logits(brain.detach(), target.detach()))
        return target
