"""The brain module (seed 001): shapes, spatial attention, subject layer, two heads, learning."""

from __future__ import annotations

import copy

import pytest
import torch

from mindsight.config import TrainConfig
from mindsight.encoders import build_encoder, count_parameters
from mindsight.errors import ConfigError, DataFormatError
from mindsight.io.things_eeg2 import CH_NAMES_63
from mindsight.sensors import ctf_271
from mindsight.train.data import TrialTensors
from mindsight.train.fit import Targets, fit, retrieval_top1
from mindsight.train.model import AlignmentModel, ModelSpec

SMALL = {"hidden": 32, "depth": 2, "features": 64, "n_virtual_channels": 32, "pos_dim": 512}
N_IMG, N_CH, N_T, DIM = 40, 20, 60, 16
CTF20 = list(ctf_271()[::13][:N_CH])


@pytest.mark.parametrize("aggregation", ["average", "affine", "attention"])
@pytest.mark.parametrize("names, n_times", [(CH_NAMES_63, 250), (ctf_271(), 281)],
                         ids=["eeg63", "ctf271"])
def test_shapes_for_eeg_and_meg_names_and_every_aggregation(names, n_times, aggregation):
    torch.manual_seed(0)
    model = build_encoder("brainmodule", n_chans=len(names), n_times=n_times, sfreq=200.0,
                          n_outputs=24, ch_names=names, aggregation=aggregation, **SMALL).eval()
    x = torch.randn(3, len(names), n_times)
    clip, mse = model.forward_heads(x)
    assert clip.shape == mse.shape == (3, 24)
    assert torch.isfinite(clip).all() and torch.isfinite(mse).all()
    assert torch.equal(model(x), clip)  # forward is the CLIP head
    assert not torch.allclose(clip, mse)  # two separate heads
    assert model.positions.shape == (len(names), 2)
    assert 0 <= float(model.positions.min()) and float(model.positions.max()) <= 1


def test_defaults_follow_the_paper_at_cpu_size():
    model = build_encoder("brainmodule", n_chans=271, n_times=281, sfreq=200.0, n_outputs=768,
                          ch_names=ctf_271())
    assert model.merger.heads.shape[0] == 270  # min(270, 2 × 271) virtual channels
    assert model.aggregate.kind == "affine"
    assert count_parameters(model) < 3_000_000
    eeg = build_encoder("brainmodule", n_chans=63, n_times=250, sfreq=250.0, n_outputs=768,
                        ch_names=CH_NAMES_63)
    assert eeg.merger.heads.shape[0] == 126


def test_front_map_is_the_composed_spatial_stages():
    """The one fused sensor map equals attention → 1×1 conv → subject layer → projection."""
    torch.manual_seed(0)
    model = build_encoder("brainmodule", n_chans=N_CH, n_times=N_T, sfreq=100.0, n_outputs=8,
                          ch_names=CTF20, n_subjects=3, **SMALL).eval()
    x = torch.randn(4, N_CH, N_T)
    subject = torch.tensor([0, 2, -1, 1])
    table = model.subject_layer.weights
    per_trial = torch.stack([table[i] if i >= 0 else table.mean(0) for i in subject.tolist()])
    h = model.spatial_conv(model.merger(x, model.positions[None].expand(4, -1, -1)))
    ref = model.input_projection(torch.einsum("bct,bcd->bdt", h, per_trial))
    weight, bias = model.front_map(subject)
    assert torch.allclose(weight @ x + bias[..., None], ref, atol=1e-5)


def test_subject_layer_differs_per_subject_and_unknown_uses_the_mean_matrix():
    torch.manual_seed(0)
    model = build_encoder("brainmodule", n_chans=N_CH, n_times=N_T, sfreq=100.0, n_outputs=8,
                          ch_names=CTF20, n_subjects=2, **SMALL).eval()
    x = torch.randn(1, N_CH, N_T).expand(2, -1, -1)
    out = model(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1], atol=1e-4)  # same input, two subjects
    unknown = model(x[:1], torch.tensor([-1]))
    assert torch.allclose(unknown, model(x[:1], None), atol=1e-6)
    mean_model = copy.deepcopy(model)
    with torch.no_grad():
        mean_model.subject_layer.weights[0] = model.subject_layer.weights.mean(0)
    assert torch.allclose(unknown, mean_model(x[:1], torch.tensor([0])), atol=1e-5)
    single = build_encoder("brainmodule", n_chans=N_CH, n_times=N_T, sfreq=100.0, n_outputs=8,
                           ch_names=CTF20, n_subjects=1, **SMALL)
    assert single.subject_layer.weights.shape[0] == 1  # per-subject training keeps the layer


def test_spatial_attention_needs_known_channel_names():
    shape = {"n_chans": 3, "n_times": 40, "sfreq": 100.0, "n_outputs": 8}
    with pytest.raises(DataFormatError, match="channel names"):
        build_encoder("brainmodule", **shape)
    with pytest.raises(DataFormatError, match="missing sensor positions.*E1"):
        build_encoder("brainmodule", ch_names=["Oz", "E1", "E2"], **shape)
    with pytest.raises(DataFormatError, match="2 channel names for 3 channels"):
        build_encoder("brainmodule", ch_names=["Oz", "Pz"], **shape)
    with pytest.raises(ConfigError, match="aggregation"):
        build_encoder("brainmodule", ch_names=["Oz", "Pz", "Cz"], aggregation="max", **shape)
    off = build_encoder("brainmodule", spatial_attention=False, **shape)  # no positions needed
    assert off.merger is None and off(torch.randn(2, 3, 40)).shape == (2, 8)
    spec = ModelSpec(encoder="brainmodule", n_chans=3, n_times=40, sfreq=100.0, n_outputs=8)
    with pytest.raises(DataFormatError, match="channel names"):
        AlignmentModel(spec)  # a spec without ch_names


def _grads(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("clip_weight", [1.0, 0.0, 0.5])
def test_clip_term_trains_the_clip_head_and_mse_term_the_mse_head(clip_weight):
    torch.manual_seed(0)
    spec = ModelSpec(encoder="brainmodule", n_chans=N_CH, n_times=N_T, sfreq=100.0, n_outputs=DIM,
                     params=SMALL, clip_weight=clip_weight, ch_names=CTF20, subjects=[1, 2])
    model = AlignmentModel(spec)
    assert model.two_heads
    emb, txt, mse = model.heads(torch.randn(6, N_CH, N_T), torch.tensor([1, 2, 1, 2, 3, 1]))
    loss, parts = model.loss(emb, torch.randn(6, DIM), txt, mse_pred=mse)
    loss.backward()
    enc = model.encoder
    assert (_grads(enc.clip_head) > 0) == (clip_weight > 0)
    assert (_grads(enc.mse_head) > 0) == (clip_weight < 1)
    assert _grads(enc.blocks) > 0  # the shared trunk learns from both terms


def _trials(patterns: torch.Tensor, reps: int, gen: torch.Generator, subject: int) -> TrialTensors:
    n = len(patterns)
    x = patterns.repeat(reps, 1, 1) + torch.randn(n * reps, N_CH, N_T, generator=gen)
    image = torch.arange(n).repeat(reps)
    return TrialTensors(x=x, image=image, concept=image.clone(),
                        subject=torch.full((n * reps,), subject))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small brain module fitted on 40 images, each a fixed random rank-1 spatio-temporal
    pattern on 20 CTF sensors + unit noise; new repetitions are held out."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(N_IMG, DIM, generator=gen)
    patterns = torch.randn(N_IMG, N_CH, 1, generator=gen) * torch.randn(N_IMG, 1, N_T, generator=gen)
    train, val, test = (_trials(patterns, reps, gen, subject=7) for reps in (4, 1, 2))
    spec = ModelSpec(encoder="brainmodule", n_chans=N_CH, n_times=N_T, sfreq=100.0, n_outputs=DIM,
                     params=SMALL, clip_weight=0.75, ch_names=CTF20, subjects=[7])
    torch.manual_seed(0)
    model = AlignmentModel(spec)
    work = tmp_path_factory.mktemp("brainmodule")
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-3, patience=None, select_by="val_top1")
    result = fit(model, train, val, Targets(levels=[images]), cfg, seed=0, workdir=work)
    return model, result, test, images, work


def test_learns_retrieval_well_above_chance(trained):
    model, result, test, images, _ = trained
    chance = 1 / N_IMG
    assert result.best_score > 3 * chance, result.history  # validation top-1
    emb, _ = model.embed(test.x, test.subject)
    top1 = retrieval_top1(emb, images, test.image)  # held-out repetitions
    assert top1 > 3 * chance, top1
    assert {"clip", "mse"} <= set(result.history[-1])


def test_checkpoint_round_trip_gives_identical_outputs(trained):
    from mindsight.evaluate.run import load_model

    model, _, test, _, work = trained
    loaded = load_model(work)
    assert loaded.spec.ch_names == CTF20 and loaded.spec.subjects == [7]
    for head in ("clip", "mse"):
        a, _ = model.embed(test.x, test.subject, head=head)
        b, _ = loaded.embed(test.x, test.subject, head=head)
        assert torch.allclose(a, b, atol=1e-6), head
    clip, _ = model.embed(test.x, test.subject)
    mse, _ = model.embed(test.x, test.subject, head="mse")
    assert not torch.allclose(clip, mse)
    with pytest.raises(ConfigError, match="head"):
        model.embed(test.x, test.subject, head="text")
