"""Brain encoders: one constructor signature, correct shapes, parameter counts, subject tokens."""

from __future__ import annotations

import pytest
import torch

from mindsight.encoders import (
    ENCODERS,
    build_encoder,
    count_parameters,
    encoder_names,
    needs_ch_names,
)
from mindsight.errors import ConfigError, UnknownNameError
from mindsight.io.things_eeg2 import CH_NAMES_17

SHAPE = {"n_chans": 17, "n_times": 100, "sfreq": 100.0, "n_outputs": 32}


@pytest.mark.parametrize("name", encoder_names())
def test_every_encoder_maps_epochs_to_embeddings(name):
    torch.manual_seed(0)
    model = build_encoder(name, **SHAPE, **({"ch_names": CH_NAMES_17} if needs_ch_names(name) else {}))
    model.eval()
    out = model(torch.randn(3, SHAPE["n_chans"], SHAPE["n_times"]))
    assert out.shape == (3, SHAPE["n_outputs"])
    assert torch.isfinite(out).all()
    assert count_parameters(model) == sum(p.numel() for p in model.parameters() if p.requires_grad) > 0


def test_required_names_are_registered():
    for name in ("atm", "atm-e", "nice", "mlp", "ridge", "eegnet", "shallowfbcspnet",
                 "eegconformer", "atcnet"):
        assert name in ENCODERS


def test_braindecode_models_are_reused_not_rewritten():
    import braindecode.models

    model = build_encoder("eegconformer", **SHAPE)
    assert isinstance(model.backbone, braindecode.models.EEGConformer)
    atm_e = build_encoder("atm-e", **SHAPE)
    assert isinstance(atm_e.eegnet, braindecode.models.EEGNet)


def test_unknown_encoder_lists_available_names():
    with pytest.raises(UnknownNameError, match="available: .*atm.*nice"):
        build_encoder("transformer-xl", **SHAPE)


def test_bad_hyperparameter_names_the_encoder():
    with pytest.raises(ConfigError, match="'nice'.*bad hyperparameters"):
        build_encoder("nice", n_filters_typo=3, **SHAPE)


def test_atm_tokens_are_whole_channel_series_and_attention_is_across_channels():
    model = build_encoder("atm", d_model=64, **SHAPE)
    assert model.token.in_features == SHAPE["n_times"]  # one token per channel, no patching
    assert model.positions.shape == (SHAPE["n_chans"], 64)


def test_atm_unknown_subject_uses_the_mean_token():
    torch.manual_seed(0)
    model = build_encoder("atm", d_model=64, n_subjects=3, **SHAPE).eval()
    x = torch.randn(2, SHAPE["n_chans"], SHAPE["n_times"])
    unknown = model(x, torch.tensor([-1, -1]))
    assert torch.allclose(unknown, model(x, None), atol=1e-6)
    known = model(x, torch.tensor([0, 2]))
    assert not torch.allclose(known, unknown, atol=1e-4)  # tokens make a difference


def test_ridge_closed_form_recovers_a_linear_map():
    torch.manual_seed(0)
    w = torch.randn(8 * 10, 4)
    x = torch.randn(200, 8, 10)
    y = x.flatten(1) @ w
    model = build_encoder("ridge", n_chans=8, n_times=10, sfreq=100.0, n_outputs=4,
                          alphas=[1e-6, 1.0])
    scores = model.fit(x[:150], y[:150], x[150:], y[150:],
                       score=lambda pred, target: -float(((pred - target) ** 2).mean()))
    assert float(model.alpha) == pytest.approx(1e-6) and set(scores) == {1e-6, 1.0}
    assert torch.allclose(model(x[150:]), y[150:], atol=1e-2)


def test_shallow_conv_computes_the_plain_layer_stack_with_its_gradients():
    """Box average then strided kernel (and the spatial conv as a matrix product) is the
    authors' Conv2d → AvgPool2d → BN → ELU → Conv2d(chans) → ... stack: values and gradients
    agree with that stack computed in float64 as closely as the float32 stack itself does."""
    import copy

    from mindsight.encoders.blocks import ShallowTSConv

    torch.manual_seed(0)
    block = ShallowTSConv(n_chans=5, n_times=120)
    x = torch.randn(6, 5, 120) * 3 + 50  # an offset: prefix sums must not lose precision
    exact = copy.deepcopy(block).double()

    def stack(b, inp):
        pooled = torch.nn.AvgPool2d((1, b.pool), (1, b.stride))(b.temporal(inp.unsqueeze(1)))
        return b.spatial(pooled)

    fused = torch.nn.functional.conv2d(x.unsqueeze(1), block.pooled_kernel(), block.temporal.bias,
                                       stride=(1, block.stride))
    pooled = torch.nn.AvgPool2d((1, block.pool), (1, block.stride))(block.temporal(x.unsqueeze(1)))
    assert torch.allclose(fused, pooled, atol=1e-4)
    assert torch.allclose(block.temporal_pooled(x), pooled, atol=1e-4)

    def run(b, inp, fn):
        torch.manual_seed(1)  # the same dropout mask for every variant
        out = fn(b, inp)
        return [out, *torch.autograd.grad(out.pow(2).sum(), list(b.parameters()))]

    def error(values, reference):
        return max(float((v.detach().double() - r).abs().max() / r.abs().max().clamp_min(1e-12))
                   for v, r in zip(values, reference, strict=True))

    for train in (False, True):
        for b in (block, exact):
            b.train(train)
        reference = run(exact, x.double(), stack)
        ours, theirs = error(run(block, x, lambda b, i: b(i)), reference), error(run(block, x, stack), reference)
        assert ours < max(2 * theirs, 1e-5), (train, ours, theirs)
