"""UBP's and MultiBlur's EEG encoders: shapes, sizes, the non-negative spatial filters, learning."""

from __future__ import annotations

import math

import pytest
import torch

from mindsight.encoders import build_encoder, count_parameters
from mindsight.encoders.blur import UBP, MultiBlur
from mindsight.errors import ConfigError
from mindsight.train.losses import clip_loss

AUTHORS = {  # the authors' input shapes, with a 1024-d (CLIP RN50) embedding
    "ubp": {"n_chans": 17, "n_times": 250, "sfreq": 250.0, "n_outputs": 1024},
    "multiblur": {"n_chans": 63, "n_times": 250, "sfreq": 250.0, "n_outputs": 1024},
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest)


@pytest.mark.parametrize("name", ["ubp", "multiblur"])
@pytest.mark.parametrize("shape", [None, (17, 100, 100.0, 32), (5, 37, 128.0, 7)])
def test_maps_epochs_to_embeddings(name, shape):
    torch.manual_seed(0)
    kw = AUTHORS[name] if shape is None else dict(
        zip(("n_chans", "n_times", "sfreq", "n_outputs"), shape, strict=True))
    model = build_encoder(name, **kw)
    x = torch.randn(3, kw["n_chans"], kw["n_times"])
    for train in (True, False):
        out = model.train(train)(x, None)
        assert out.shape == (3, kw["n_outputs"]) and torch.isfinite(out).all()


def test_sizes_are_the_authors():
    ubp = build_encoder("ubp", **AUTHORS["ubp"])
    assert isinstance(ubp, UBP)
    assert ubp.projector.proj.in_features == 17 * 250
    assert ubp.projector.blocks[0][2].p == pytest.approx(0.3)
    assert count_parameters(ubp) == 5_404_672

    mb = build_encoder("multiblur", **AUTHORS["multiblur"])
    assert isinstance(mb, MultiBlur)
    assert mb.spatial.weight.shape == (25, 63)
    assert [m.out_features for m in mb.temporal if isinstance(m, torch.nn.Linear)] == [200, 200]
    assert [m.p for m in mb.temporal if isinstance(m, torch.nn.Dropout)] == [0.25, 0.65]
    assert mb.head.in_features == 25 * 200
    assert count_parameters(mb) == 5_213_049


def test_multiblur_spatial_weights_stay_nonnegative_after_a_step():
    torch.manual_seed(0)
    model = build_encoder("multiblur", n_chans=8, n_times=40, sfreq=100.0, n_outputs=6).eval()
    w = model.spatial.weight
    assert (w >= 0).all()  # folded from the start
    opt = torch.optim.SGD([w], lr=1.0)
    w.grad = torch.ones_like(w)  # a step pushing every raw weight below zero
    opt.step()
    raw = w.detach().clone()
    assert (raw < 0).all()

    x = torch.randn(4, 8, 40)
    expected_filtered = torch.einsum("fc,bct->bft", raw.abs(), x)
    reference = MultiBlur(8, 40, 100.0, 6, nonnegative=False).eval()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        reference.spatial.weight.copy_(raw.abs())
        expected = reference(x)
    out = model(x)  # the forward uses |raw|, and stores it
    assert torch.allclose(model.spatial(x), expected_filtered, atol=1e-5)
    assert torch.allclose(out, expected, atol=1e-5)
    assert (w >= 0).all() and torch.equal(w.detach(), raw.abs())

    # gradients are a plain linear map's, and two forwards before one backward are fine
    model.train()
    loss = model(x).square().sum() + model(x).sum()
    loss.backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()


def test_without_the_constraint_weights_may_be_negative():
    torch.manual_seed(0)
    model = build_encoder("multiblur", n_chans=8, n_times=40, sfreq=100.0, n_outputs=6,
                          nonnegative=False)
    assert (model.spatial.weight < 0).any()
    with torch.no_grad():
        model.spatial.weight.fill_(-1.0)
    model(torch.randn(2, 8, 40))
    assert (model.spatial.weight == -1.0).all()


def test_build_encoder_checks_hyperparameters():
    model = build_encoder("ubp", n_chans=17, n_times=100, sfreq=100.0, n_outputs=16, dropout=0.1)
    assert model.projector.blocks[0][2].p == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="'ubp'.*bad hyperparameters"):
        build_encoder("ubp", n_chans=17, n_times=100, sfreq=100.0, n_outputs=16, drop_proj=0.3)
    with pytest.raises(ConfigError, match="'multiblur'.*bad hyperparameters"):
        build_encoder("multiblur", n_chans=17, n_times=100, sfreq=100.0, n_outputs=16,
                      embed_dim=200)
    with pytest.raises(ConfigError, match="'multiblur'.*'hidden' must be int"):
        build_encoder("multiblur", n_chans=17, n_times=100, sfreq=100.0, n_outputs=16,
                      hidden="wide")


NOISE = 3.0  # noise std per sample, patterns have std 1: 0.8 top-1 after 100 steps, not 1.0


def _retrieval_after_training(name: str, steps: int) -> float:
    """Top-1 retrieval of held-out noisy trials among 40 classes, each a fixed random
    channels × time pattern plus noise, trained to its class's random unit vector."""
    gen = torch.Generator().manual_seed(0)
    n_classes, n_chans, n_times, dim = 40, 16, 60, 32
    patterns = torch.randn(n_classes, n_chans, n_times, generator=gen)
    targets = torch.nn.functional.normalize(torch.randn(n_classes, dim, generator=gen), dim=1)

    def trials(n_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n_classes).repeat(n_per_class)
        noise = torch.randn(len(labels), n_chans, n_times, generator=gen)
        return patterns[labels] + NOISE * noise, labels

    torch.manual_seed(0)
    model = build_encoder(name, n_chans=n_chans, n_times=n_times, sfreq=100.0, n_outputs=dim)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scale = torch.tensor(math.log(1 / 0.07))
    model.train()
    for _ in range(steps):
        x, labels = trials(1)  # one trial per class: no duplicate positives in a batch
        loss = clip_loss(model(x), targets[labels], scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, labels = trials(5)
    with torch.no_grad():
        sims = torch.nn.functional.normalize(model(x), dim=1) @ targets.T
    return float((sims.argmax(1) == labels).float().mean())


@pytest.mark.parametrize("name", ["ubp", "multiblur"])
def test_learns_to_retrieve_noisy_class_patterns(name):
    assert _retrieval_after_training(name, steps=0) < 0.15  # untrained: near chance (2.5 %)
    assert _retrieval_after_training(name, steps=150) > 0.5
