"""The contrastive objective and the retrieval metrics."""

from __future__ import annotations

import math

import pytest
import torch

from mindsight.evaluate.retrieval import k_way, ranks, retrieval_metrics, similarity
from mindsight.evaluate.stats import mean_ci
from mindsight.train.losses import ContrastiveLoss, clip_loss


def test_clip_loss_is_low_for_matched_pairs_and_high_for_shuffled():
    torch.manual_seed(0)
    img = torch.randn(32, 16)
    scale = torch.tensor(math.log(1 / 0.07))
    matched = clip_loss(img + 0.01 * torch.randn_like(img), img, scale)
    shuffled = clip_loss(img[torch.randperm(32)], img, scale)
    assert matched < 0.1 < math.log(32) * 0.5 < shuffled


def test_repeated_images_in_a_batch_need_no_special_targets():
    """Twin trials of one image have identical target columns; a soft two-positive target
    gives exactly the plain loss, so the plain loss is used."""
    torch.manual_seed(0)
    img = torch.randn(4, 16)
    ids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    brain = img[ids] + 0.3 * torch.randn(8, 16)
    scale = torch.tensor(math.log(1 / 0.07))
    logits = scale.exp() * torch.nn.functional.normalize(brain, dim=1) @ \
        torch.nn.functional.normalize(img[ids], dim=1).T
    same = (ids[:, None] == ids[None, :]).float()
    soft = same / same.sum(1, keepdim=True)
    ce = lambda lg: -(soft * torch.log_softmax(lg, 1)).sum(1).mean()  # noqa: E731
    assert clip_loss(brain, img[ids], scale).item() == pytest.approx(
        ((ce(logits) + ce(logits.T)) / 2).item(), rel=1e-5)


def test_loss_mixes_clip_and_mse_with_lambda_and_learns_temperature():
    torch.manual_seed(0)
    brain, img = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4)
    loss = ContrastiveLoss(clip_weight=0.25, temperature=0.07)
    assert loss.temperature == pytest.approx(0.07)
    total, parts = loss(brain, img)
    assert total.item() == pytest.approx(float(0.25 * parts["clip"] + 0.75 * parts["mse"]), rel=1e-5)
    total.backward()
    assert loss.logit_scale.grad is not None and brain.grad is not None
    only_clip, parts = ContrastiveLoss(clip_weight=1.0)(brain, img)
    assert set(parts) == {"clip"}


def test_atm_objective_raw_scale_unnormalised_brain_and_text_clip_term():
    """ATM's ClipLoss: logits = s·⟨brain, unit image⟩ with s itself (≈ 2.66, not e^2.66) and the
    brain embedding unnormalised; loss = 0.99·CLIP(image) + 0.01·CLIP(text of the trial's class)."""
    torch.manual_seed(0)
    brain, img, names = torch.randn(6, 4), torch.randn(6, 4), torch.randn(3, 4)
    concept = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = ContrastiveLoss(clip_weight=0.99, mse_weight=0.0, text_weight=0.01, logit_scale="raw",
                           normalize_brain=False, text_loss="clip")
    s = math.log(1 / 0.07)
    assert loss.temperature == pytest.approx(1 / s)

    def sym(logits):
        labels = torch.arange(len(logits))
        ce = torch.nn.functional.cross_entropy
        return (ce(logits, labels) + ce(logits.T, labels)) / 2

    unit = torch.nn.functional.normalize
    expect_img = sym(s * brain @ unit(img, dim=1).T)
    expect_txt = sym(s * brain @ unit(names[concept], dim=1).T)
    total, parts = loss(brain, img, text_pred=brain, text_table=names, concept_ids=concept)
    assert set(parts) == {"clip", "text"}  # no MSE term
    assert float(parts["clip"]) == pytest.approx(float(expect_img), rel=1e-5)
    assert float(parts["text"]) == pytest.approx(float(expect_txt), rel=1e-5)
    assert float(total) == pytest.approx(float(0.99 * expect_img + 0.01 * expect_txt), rel=1e-5)
    # CLIP's parametrisation differs: exp(s) and unit brain rows
    clip_style = ContrastiveLoss(clip_weight=1.0)(brain, img)[1]["clip"]
    assert float(clip_style) == pytest.approx(float(sym(math.exp(s) * unit(brain, dim=1) @ unit(img, dim=1).T)),
                                              rel=1e-5)


def test_text_term_is_a_classification_over_concept_names():
    torch.manual_seed(0)
    names = torch.randn(5, 6)
    concept = torch.tensor([0, 1, 2, 3, 4, 0])
    loss = ContrastiveLoss(clip_weight=1.0, text_weight=0.5)
    good = loss(torch.randn(6, 3), torch.randn(6, 3), text_pred=names[concept] * 5,
                text_table=names, concept_ids=concept)[1]["text"]
    bad = loss(torch.randn(6, 3), torch.randn(6, 3), text_pred=-names[concept],
               text_table=names, concept_ids=concept)[1]["text"]
    assert good < 0.1 < bad


def test_perfect_queries_rank_first_and_random_ones_are_at_chance():
    torch.manual_seed(0)
    cands = torch.randn(200, 32)
    target = torch.arange(200)
    perfect = retrieval_metrics(cands * 3.0, cands, target, k_ways=(2, 50))
    assert perfect["top1"] == perfect["top5"] == 1.0 and perfect["n_way"] == 200
    assert perfect["median_rank"] == pytest.approx(1 / 200)
    assert perfect["k_way"]["50"]["top1"] == 1.0
    rand = retrieval_metrics(torch.randn(2000, 32), cands, torch.randint(0, 200, (2000,)),
                             k_ways=(2, 10))
    assert rand["top1"] < 0.02 and 0.4 < rand["median_rank"] < 0.6
    assert rand["k_way"]["2"]["top1"] == pytest.approx(0.5, abs=0.03)
    assert rand["k_way"]["10"]["top1"] == pytest.approx(0.1, abs=0.02)
    assert rand["chance_top1"] == 1 / 200 and rand["chance_top5"] == 5 / 200


def test_k_way_matches_an_explicit_loop():
    torch.manual_seed(1)
    sim = torch.randn(6, 12)
    target = torch.randint(0, 12, (6,))
    got = k_way(sim, target, k=4, n_draws=3000, seed=0)
    # exact expectation: P(true beats k-1 random distractors drawn without replacement)
    exact = []
    for q in range(6):
        better = int((sim[q] > sim[q, target[q]]).sum())
        others = 11
        p_top1 = math.comb(others - better, 3) / math.comb(others, 3)
        exact.append(p_top1)
    assert got["top1"] == pytest.approx(sum(exact) / 6, abs=0.02)
    assert got["top5"] == 1.0  # with 4 candidates the true one is always in the top 5


def test_similarity_in_chunks_equals_one_product():
    q, c = torch.randn(50, 8), torch.randn(30, 8)
    full = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(c, dim=1).T
    assert torch.allclose(similarity(q, c, chunk=7), full, atol=1e-6)
    assert ranks(full, full.argmax(1)).sum() == 0


def test_mean_ci_uses_the_t_distribution():
    out = mean_ci([0.1, 0.2, 0.3])
    assert out["mean"] == pytest.approx(0.2)
    assert out["ci_high"] - out["mean"] == pytest.approx(4.303 * 0.1 / math.sqrt(3), rel=1e-3)
    assert mean_ci([0.5])["ci_low"] is None
