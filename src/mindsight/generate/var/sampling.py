"""Sampling one token per position from VAR's logits: guidance mix, top-k / top-p, seeded."""

from __future__ import annotations

import torch


def cfg_mix(cond: torch.Tensor, uncond: torch.Tensor, t: float) -> torch.Tensor:
    """Classifier-free guidance as VAR writes it: (1 + t)·cond − t·uncond."""
    return (1 + t) * cond - t * uncond


def filter_top_k_top_p(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """``logits`` (..., V) with everything outside the top ``top_k`` entries and outside the
    smallest set of entries holding ``top_p`` of the probability set to −inf. 0 turns a filter
    off; the most likely entry always stays."""
    logits = logits.clone()
    vocab = logits.shape[-1]
    if top_k > 0:
        kth = logits.topk(min(int(top_k), vocab), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=False)
        # ascending: drop the entries whose cumulative mass stays within the discarded 1 − top_p
        drop_sorted = sorted_logits.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop_sorted[..., -1] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_top_k_top_p(logits: torch.Tensor, *, top_k: int = 0, top_p: float = 0.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of ``logits`` (n, l, V) → (n, l) long, after the top-k / top-p filter."""
    n, length, vocab = logits.shape
    probs = filter_top_k_top_p(logits.float(), top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs.view(-1, vocab), 1, generator=generator).view(n, length)
