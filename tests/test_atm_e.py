"""ATM-E as the authors built it: attention across time, a time-mixing linear layer,
braindecode's EEGNet (0.8.1 behaviour by default), residual projector."""

from __future__ import annotations

import math

import pytest
import torch

from mindsight.encoders import ENCODERS, build_encoder, count_parameters
from mindsight.errors import ConfigError, DataFormatError, UnknownNameError

PAPER = {"n_chans": 63, "n_times": 250, "sfreq": 250.0, "n_outputs": 1024}
SMALL = {"n_chans": 17, "n_times": 100, "sfreq": 100.0, "n_outputs": 32}


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return build_encoder("atm-e", **PAPER)


def test_parameter_count_matches_the_authors_used_parameters(paper_model):
    # the authors' 4,519,690 used parameters less the logit scale, which lives in our loss
    parts = {name: count_parameters(child) for name, child in paper_model.named_children()}
    assert parts == {"attention": 276_539, "time_linear": 62_750, "eegnet": 1_653_168,
                     "projector": 2_527_232}
    assert count_parameters(paper_model) == 4_519_689
    assert count_parameters(paper_model.eegnet.final_layer) == 1_614_240


def test_layers_have_the_authors_shapes(paper_model):
    import braindecode.models

    layers = paper_model.attention.transformer.layers
    assert len(layers) == 1 and paper_model.attention.transformer.norm is None
    layer = layers[0]
    assert layer.self_attn.embed_dim == 63 and layer.self_attn.num_heads == 1  # d_model = n_chans
    assert layer.linear1.out_features == 2048 and layer.dropout.p == 0.1
    assert layer.activation_relu_or_gelu == 1 and not layer.norm_first  # ReLU, post-norm
    assert paper_model.attention.positions.shape == (250, 63)  # time samples are the tokens
    lin = paper_model.time_linear
    assert (lin.in_features, lin.out_features) == (250, 250)
    net = paper_model.eegnet
    assert isinstance(net, braindecode.models.EEGNet)
    assert net.conv_temporal.kernel_size == (1, 4) and net.conv_spatial.out_channels == 160
    assert tuple(net.final_layer.conv_classifier.weight.shape) == (1440, 160, 1, 7)
    proj = paper_model.projector
    assert (proj.proj.in_features, proj.proj.out_features) == (1440, 1024)
    assert len(proj.blocks) == 1 and proj.blocks[0][2].p == 0.5


def test_positions_are_the_sinusoidal_table_with_odd_width(paper_model):
    pe = paper_model.attention.positions
    for t, i in [(0, 0), (7, 3), (249, 31)]:
        freq = math.exp(-math.log(10000.0) * 2 * i / 63)
        assert pe[t, 2 * i].item() == pytest.approx(math.sin(t * freq), abs=1e-5)
        if 2 * i + 1 < 63:
            assert pe[t, 2 * i + 1].item() == pytest.approx(math.cos(t * freq), abs=1e-5)


def test_eegnet_gives_1440_raw_features_and_the_embedding_has_its_size(paper_model):
    paper_model.eval()
    x = torch.randn(2, 63, 250)
    with torch.no_grad():
        feats = paper_model.eegnet(paper_model.time_linear(paper_model.attention(x)))
        out = paper_model(x)
    assert feats.shape == (2, 1440)
    assert not any(isinstance(m, torch.nn.LogSoftmax | torch.nn.Softmax)
                   for m in paper_model.modules())
    assert not torch.allclose(feats.exp().sum(1), torch.ones(2))  # not log-probabilities
    assert out.shape == (2, 1024) and torch.isfinite(out).all()


def test_no_subject_tokens_and_subject_is_ignored():
    assert not ENCODERS.get("atm-e").subject_layers
    torch.manual_seed(0)
    model = build_encoder("atm-e", **SMALL).eval()
    x = torch.randn(2, 17, 100)
    assert torch.equal(model(x), model(x, torch.tensor([0, 3])))


def test_trains_a_few_steps():
    torch.manual_seed(0)
    model = build_encoder("atm-e", **SMALL)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    x, target = torch.randn(8, 17, 100), torch.nn.functional.normalize(torch.randn(8, 32), dim=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        emb = torch.nn.functional.normalize(model(x), dim=1)
        loss = torch.nn.functional.cross_entropy(emb @ target.T / 0.07, torch.arange(8))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)
    after = model.state_dict()
    assert not torch.equal(before["eegnet.conv_spatial.weight"], after["eegnet.conv_spatial.weight"])


def test_too_short_epochs_are_a_clear_error():
    build_encoder("atm-e", **{**SMALL, "n_times": 27})  # EEGNet's shortest epoch at kernel 4
    with pytest.raises(DataFormatError, match="at least 27 samples"):
        build_encoder("atm-e", **{**SMALL, "n_times": 26})


def test_heads_must_divide_the_channel_count():
    with pytest.raises(ConfigError, match="n_heads"):
        build_encoder("atm-e", n_heads=2, **SMALL)


def test_eegnet_compat_08_clips_the_stored_spatial_weights_like_braindecode_081():
    torch.manual_seed(0)
    model = build_encoder("atm-e", **SMALL)
    spatial = model.eegnet.conv_spatial
    assert isinstance(spatial.weight, torch.nn.Parameter)  # no parametrization, as in 0.8.1
    with torch.no_grad():
        spatial.weight.mul_(50)
    model(torch.randn(2, 17, 100))
    assert spatial.weight.flatten(1).norm(dim=1).max() <= 1 + 1e-5


def test_eegnet_compat_1x_keeps_braindecode_1x_parametrization():
    from torch.nn.utils import parametrize

    model = build_encoder("atm-e", eegnet_compat="1.x", **SMALL)
    assert parametrize.is_parametrized(model.eegnet.conv_spatial, "weight")
    assert count_parameters(model) == count_parameters(build_encoder("atm-e", **SMALL))
    with pytest.raises(UnknownNameError, match="available: 0.8, 1.x"):
        build_encoder("atm-e", eegnet_compat="0.9", **SMALL)
