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
from mindsight.train.multimodal import (
    FUSED,
    FusionEncoder,
    ModalityEncoders,
    ModalityTargets,
    MultimodalConfig,
    modality_mask,
    multimodal_loss,
)
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
    modalities: list[str] = field(default_factory=list)  # CogCapPro's modalities (empty: one target)
    modality_kinds: list[str] = field(default_factory=list)  # 'image' | 'text', per modality
    modality_levels: list[int] = field(default_factory=list)  # levels per modality, in order
    multimodal: dict[str, Any] = field(default_factory=dict)  # resolved MultimodalConfig

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

    With ``spec.modalities`` (CogCapPro, :mod:`mindsight.train.multimodal`) the encoder gives one
    embedding per modality and a fusion encoder their fused embedding in the image model's space:
    :meth:`forward` returns (fused, text modality's embedding or the fused one), so retrieval,
    evaluation and reconstruction read the fused embedding; :meth:`embed_modalities` and
    :meth:`modality_tables` give every modality's embeddings and targets.
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
        if spec.modalities:
            self._build_multimodal(params)
        else:
            self.encoder = build_encoder(spec.encoder, n_chans=spec.n_chans, n_times=spec.n_times,
                                         sfreq=spec.sfreq, n_outputs=spec.n_outputs, **params)
            self.two_heads = bool(self.encoder.two_heads)  # a separate MSE head (forward_heads)
            self.text_head = nn.Linear(spec.n_outputs, spec.text_dim) if spec.text_dim else None
            self.image_side = build_image_side(spec.image_side, spec.level_dim_list(),
                                               spec.n_outputs, spec.n_pairs, **spec.image_side_params)
            self.multimodal: MultimodalConfig | None = None
        self.loss = ContrastiveLoss(spec.clip_weight, spec.text_weight, spec.temperature,
                                    spec.learn_temperature, mse_weight=spec.mse_weight,
                                    logit_scale=spec.logit_scale,
                                    normalize_brain=spec.normalize_brain, text_loss=spec.text_loss)

    def _build_multimodal(self, params: dict[str, Any]) -> None:
        """The modality encoders, their targets and the fusion (see the class doc)."""
        spec = self.spec
        if spec.text_dim:
            raise ConfigError("a multimodal model has no concept-name text head (its text "
                              "modality is the text space); set text_dim to None")
        self.multimodal = MultimodalConfig(**spec.multimodal)
        self.modality_targets = ModalityTargets(spec.modalities, spec.modality_levels,
                                                spec.level_dim_list(), spec.n_pairs,
                                                gamma=self.multimodal.gamma, z=self.multimodal.z)
        dims = self.modality_targets.dims

        def build(n_outputs: int) -> nn.Module:
            return build_encoder(spec.encoder, n_chans=spec.n_chans, n_times=spec.n_times,
                                 sfreq=spec.sfreq, n_outputs=n_outputs, **params)

        cfg = self.multimodal
        self.encoder = ModalityEncoders(build, dims, spec.n_outputs, trunk=cfg.trunk,
                                        head_hidden=cfg.head_hidden)
        self.two_heads = False  # a two-head trunk serves its CLIP head (forward)
        self.text_head = None
        self.fusion = FusionEncoder(list(dims.values()), spec.n_outputs, hidden=cfg.fusion_hidden,
                                    layers=cfg.fusion_layers, heads=cfg.fusion_heads,
                                    ff=cfg.fusion_ff, dropout=cfg.fusion_dropout)
        self.image_side = build_image_side("fixed", [spec.n_outputs], spec.n_outputs)  # unused

    def modality_kinds(self) -> dict[str, str]:
        """Each modality's kind, 'image' or 'text' (text is scored at concept level)."""
        return dict(zip(self.spec.modalities, self.spec.modality_kinds, strict=True))

    def _text_modality(self) -> str | None:
        return next((m for m, k in self.modality_kinds().items() if k == "text"), None)

    def modality_weights(self, epoch: int | None = None) -> dict[str, float]:
        """The per-modality loss weights at ``epoch`` (None: all configured weights): text-kind
        modalities weigh 0 from ``text_epochs`` on."""
        cfg, kinds = self.multimodal, self.modality_kinds()
        stop = cfg.text_epochs is not None and epoch is not None and epoch >= cfg.text_epochs
        return {m: 0.0 if (stop and kinds[m] == "text") else w for m, w in cfg.weights.items()}

    def modality_outputs(self, x: torch.Tensor, subject: torch.Tensor | None = None,
                         keep: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every modality's embedding of epochs ``x`` and, under ``"fused"``, their fusion (the
        modality embeddings detached; those with ``keep`` False zeroed)."""
        outs = self.encoder(*self._inputs(x, subject))
        fused = self.fusion([outs[m].detach() for m in self.spec.modalities], keep)
        return {**outs, FUSED: fused}

    def multimodal_loss(self, x: torch.Tensor, subject: torch.Tensor | None, levels: list[torch.Tensor],
                        images: torch.Tensor, pairs: torch.Tensor, *, epoch: int | None = None,
                        generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of one batch (samples ``pairs`` showing image rows ``images``) and
        its parts: ``mask_count`` modalities zeroed before the fusion (drawn with
        ``generator``), each adapting image side shown its pair logits."""
        keep = modality_mask(len(self.spec.modalities), self.multimodal.mask_count, generator)
        outs = self.modality_outputs(x, subject, keep)
        fused = outs.pop(FUSED)
        targets = self.modality_targets.train_targets(levels, images, pairs, outs, self.loss.pair_logits)
        return multimodal_loss(self.loss, outs, targets, fused, self.modality_weights(epoch),
                               self.multimodal)

    def modality_loss(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of given embeddings (with ``"fused"``) and targets, every term at its
        configured weight (validation: comparable across epochs, before and after
        ``text_epochs``)."""
        outs = {m: outputs[m] for m in self.spec.modalities}
        return multimodal_loss(self.loss, outs, targets, outputs[FUSED], self.modality_weights(),
                               self.multimodal)

    @torch.no_grad()
    def embed_modalities(self, x: torch.Tensor, subject: torch.Tensor | None = None,
                         batch_size: int = 1024) -> dict[str, torch.Tensor]:
        """Every modality's embedding and the fused one of many trials, in eval mode, float, on
        the model's device."""
        was = self.training
        self.eval()
        dev = next(self.parameters()).device
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size].to(dev, non_blocking=True)
            sb = None if subject is None else subject[start : start + batch_size].to(dev)
            for k, v in self.modality_outputs(xb, sb).items():
                parts.setdefault(k, []).append(v.float())
        self.train(was)
        if not parts:
            dims = {**self.modality_targets.dims, FUSED: self.spec.n_outputs}
            return {k: torch.zeros(0, d, device=dev) for k, d in dims.items()}
        return {k: torch.cat(v) for k, v in parts.items()}

    def modality_tables(self, levels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per modality its evaluation targets (the medium blur level with uncertainty) of images
        with feature ``levels`` (the spec's levels), and ``"fused"``: the last level."""
        return self.modality_targets.tables(levels)

    def side_summary(self) -> dict[str, Any]:
        """What the image side(s) log at the end of an epoch."""
        if self.spec.modalities:
            return self.modality_targets.summary()
        return self.image_side.summary()

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
        if self.spec.modalities:
            outs = self.modality_outputs(x, subject)
            text = self._text_modality()
            return outs[FUSED], outs[text] if text is not None else outs[FUSED]
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
        (n_images, dim) tensor per level): what retrieval ranks brain embeddings against
        (a multimodal model's: the fused target)."""
        if self.spec.modalities:
            return self.modality_tables(levels)[FUSED]
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
