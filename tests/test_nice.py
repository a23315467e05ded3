"""NICE at the paper's sizes, and its optional N(0, 0.02) initialisation."""

from __future__ import annotations

import pytest
import torch

from mindsight.encoders import build_encoder, count_parameters
from mindsight.errors import UnknownNameError

PAPER = {"n_chans": 63, "n_times": 250, "sfreq": 250.0, "n_outputs": 768}


def test_parameter_count_matches_nice_at_63x250_to_768():
    model = build_encoder("nice", **PAPER)
    assert count_parameters(model.ts_conv) == 103_680  # NICE's Enc_eeg
    assert count_parameters(model.projector) == 1_698_816  # Proj_eeg
    assert count_parameters(model) == 1_802_496


def test_normal_init_redraws_conv_linear_and_batchnorm_weights_only():
    torch.manual_seed(0)
    default = build_encoder("nice", **PAPER)
    torch.manual_seed(0)
    model = build_encoder("nice", init="normal-0.02", **PAPER)
    convs_linears = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(convs_linears) == 5  # temporal, spatial, 1×1 conv; projector's two linears
    for m in convs_linears:
        w = m.weight
        assert abs(w.mean().item()) < 0.01 and w.std().item() == pytest.approx(0.02, rel=0.5)
    big = torch.cat([model.ts_conv.spatial[2].weight.flatten(), model.projector.proj.weight.flatten()])
    assert big.std().item() == pytest.approx(0.02, rel=0.02)
    bn = torch.cat([m.weight for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01) and bn.std().item() < 0.04
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # biases of convs and linears, and the LayerNorm, keep PyTorch's default
    ref = default.state_dict()
    for name, value in model.state_dict().items():
        if name.endswith("bias") and "spatial.0" not in name and "spatial.3" not in name:
            assert torch.equal(value, ref[name]), name
    assert torch.equal(model.projector.norm.weight, torch.ones(768))


def test_unknown_init_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="available: default, normal-0.02"):
        build_encoder("nice", init="xavier", **PAPER)
