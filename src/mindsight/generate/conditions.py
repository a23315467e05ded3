"""What conditions the generator: one or several brain-side embeddings, compared on one fold.

A single-target model has one conditioning, its brain embedding (``reconstructed``). A
multimodal model (CognitionCapturerPro, ``model.modalities``) has two, reconstructed from the
same trials of the same fold so that they differ only in how the generator is conditioned:

- ``reconstructed``: the fused embedding (the fusion of every modality head, in the image
  model's space), with, for generators that take a prompt, the training caption nearest to the
  text head's output (a training concept name: no test label is read);
- ``image_only``: the image head's embedding alone, without a prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mindsight.train.model import AlignmentModel

Embed = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Conditioning:
    """One way of conditioning the generator: ``embed(x, subject)`` gives the brain-side
    embeddings of epochs; ``captions(x, subject)`` (or None) their prompts."""

    name: str  # the output folder and the metrics key
    description: str
    embed: Embed
    captions: Callable[[torch.Tensor, torch.Tensor], list[str]] | None = None


def conditionings(model: AlignmentModel, head: str, caption_names: tuple[str, ...] | None = None,
                  caption_table: torch.Tensor | None = None) -> list[Conditioning]:
    """The conditionings of ``model``: its brain embedding (``head``) for a single-target model;
    the fused and the image-only embeddings for a multimodal one (captions from the text head
    when ``caption_table``, the text embeddings of ``caption_names``, is given)."""
    if not model.spec.modalities:
        return [Conditioning("reconstructed", f"the brain embeddings ({head} head)",
                             lambda x, s: model.embed(x, s, head=head)[0])]

    memo: dict[int, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    def outputs(x: torch.Tensor, s: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every head's embedding of ``x``, computed once per tensor for all conditionings."""
        hit = memo.get(id(x))
        if hit is None or hit[0] is not x:  # the tensor is kept, so its id is not reused
            memo[id(x)] = hit = (x, model.embed_modalities(x, s))
        return hit[1]

    def part(name: str) -> Embed:
        return lambda x, s: outputs(x, s)[name]

    captions = None
    if caption_table is not None and caption_names is not None and "text" in model.spec.modalities:
        def captions(x: torch.Tensor, s: torch.Tensor) -> list[str]:
            return nearest_captions(part("text")(x, s), caption_table, caption_names)

    fused = ("the fused embedding of the " + ", ".join(model.spec.modalities) + " heads"
             + (" with the nearest training caption as prompt" if captions is not None else ""))
    return [Conditioning("reconstructed", fused, part("fused"), captions),
            Conditioning("image_only", "the image head's embedding alone, no prompt", part("image"))]


def nearest_captions(text_emb: torch.Tensor, table: torch.Tensor, names: tuple[str, ...]) -> list[str]:
    """For each text-head output, the training caption (concept name) whose text embedding is
    closest in cosine, as a prompt ('aerial_tramway' → 'aerial tramway')."""
    sim = torch.nn.functional.normalize(text_emb.float().cpu(), dim=1) @ \
        torch.nn.functional.normalize(table.float().cpu(), dim=1).T
    return [names[i].replace("_", " ") for i in sim.argmax(1).tolist()]


def describe(conds: list[Conditioning]) -> dict[str, Any]:
    return {c.name: c.description for c in conds}
