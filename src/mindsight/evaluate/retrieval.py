"""Zero-shot retrieval and classification metrics, computed as matrix products.

``queries`` are predicted brain embeddings, ``candidates`` image (or text) embeddings and
``target[i]`` the row of query i's true candidate. Similarity is cosine. A rank is the number of
candidates scoring strictly higher than the true one (0 = retrieved first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

K_WAYS = (2, 4, 10, 50, 100)


def similarity(queries: torch.Tensor, candidates: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Cosine similarity (n_queries, n_candidates), one matrix product per chunk of queries."""
    c = F.normalize(candidates.float(), dim=1)
    return torch.cat([F.normalize(q.float(), dim=1) @ c.T for q in queries.split(chunk)])


def ranks(sim: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    true = sim.gather(1, target[:, None])
    return (sim > true).sum(1)


def topk(rank: torch.Tensor, k: int) -> float:
    return float((rank < k).double().mean())


def relative_median_rank(rank: torch.Tensor, n_candidates: int) -> float:
    """Median over queries of (rank + 1) / n_candidates (Benchetrit et al.; 0.5 is chance)."""
    return float(((rank.double() + 1) / n_candidates).median())


def k_way(sim: torch.Tensor, target: torch.Tensor, k: int, n_draws: int = 100, seed: int = 0,
          chunk: int = 256) -> dict[str, float]:
    """k-way top-1/top-5: the true candidate plus k − 1 random distractors, ``n_draws`` fixed-seed
    draws per query, averaged."""
    n_q, n_c = sim.shape
    if not 2 <= k <= n_c:
        raise ValueError(f"k-way needs 2 <= k <= {n_c} candidates, got k={k}")
    gen = torch.Generator().manual_seed(seed)
    hits1 = hits5 = 0.0
    true_all = sim.gather(1, target[:, None])
    for start in range(0, n_q, chunk):
        s = sim[start : start + chunk]
        t = target[start : start + chunk]
        noise = torch.rand(n_draws, len(s), n_c, generator=gen)
        noise[:, torch.arange(len(s)), t] = float("inf")  # the true one is never a distractor
        picks = noise.topk(k - 1, dim=2, largest=False).indices
        better = (s.cpu().unsqueeze(0).expand(n_draws, -1, -1).gather(2, picks)
                  > true_all[start : start + chunk].cpu().unsqueeze(0)).sum(2)
        hits1 += float((better < 1).float().sum())
        hits5 += float((better < 5).float().sum())
    total = n_q * n_draws
    return {"top1": hits1 / total, "top5": hits5 / total}


def retrieval_metrics(queries: torch.Tensor, candidates: torch.Tensor, target: torch.Tensor,
                      k_ways: tuple[int, ...] = K_WAYS, n_draws: int = 100,
                      seed: int = 0) -> dict:
    """n-way top-1/top-5 over all candidates, relative median rank, and k-way accuracies."""
    sim = similarity(queries, candidates)
    target = target.to(sim.device)
    rank = ranks(sim, target)
    n = candidates.shape[0]
    out = {
        "n_way": int(n), "n_queries": int(len(queries)),
        "top1": topk(rank, 1), "top5": topk(rank, 5),
        "chance_top1": 1.0 / n, "chance_top5": min(1.0, 5.0 / n),
        "median_rank": relative_median_rank(rank, n),
    }
    if k_ways:
        out["k_way"] = {str(k): k_way(sim, target, k, n_draws, seed) for k in k_ways if k <= n}
    return out
