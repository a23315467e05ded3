"""The published recipes as presets: each reproduces its authors' code (model and training)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mindsight.config import RunConfig
from mindsight.encoders import count_parameters
from mindsight.recording import Recording, Trials
from mindsight.train.fit import make_optimizer
from mindsight.train.model import AlignmentModel
from mindsight.train.run import model_spec

CONFIGS = Path(__file__).parents[1] / "configs"


def _model(name: str, dim: int) -> tuple[RunConfig, AlignmentModel]:
    """The preset's model at THINGS-EEG2's NICE/ATM shape (63 channels × 250 samples), one subject."""
    cfg = RunConfig.load(CONFIGS / f"{name}.yaml")
    rec = Recording(data=np.zeros((0, 63, 250), np.float32), ch_names=[f"E{i}" for i in range(63)],
                    sfreq=250.0, times=np.arange(250) / 250.0,
                    trials=Trials.build(np.zeros(0, int), np.zeros(0, int), 1), partition="train")
    torch.manual_seed(0)
    return cfg, AlignmentModel(model_spec(cfg, rec, dim, subjects=[1], image_model=cfg.model.image_model))


@pytest.mark.parametrize("name, repo, commit, selects_on_test", [
    ("atm", "ncclab-sustech/EEG_Image_decode", "61fc9c3ccc6ee0cd7b9cf3eccbcd2fa371c43ff4", True),
    ("atm-e", "ncclab-sustech/EEG_Image_decode", "61fc9c3ccc6ee0cd7b9cf3eccbcd2fa371c43ff4", True),
    ("nice", "eeyhsong/NICE-EEG", "a7709d81af9c4971c711b03fbee4e09e01477c4b", False),
    ("ccpro", "XiaoZhangYES/CognitionCapturerPro", "d251ce2", False),
])
def test_each_preset_names_its_source_and_commit(name, repo, commit, selects_on_test):
    header = "".join(line for line in (CONFIGS / f"{name}.yaml").read_text().splitlines(True)
                     if line.startswith("#"))
    assert repo in header and commit in header
    if selects_on_test:  # the authors' test-set epoch selection is named and not reproduced
        assert re.search(r"Not reproduced: [^:]*test", header)
    cfg = RunConfig.load(CONFIGS / f"{name}.yaml")
    assert cfg.data.val_fraction > 0 and cfg.train.select_by in ("val_loss", "val_top1")


def test_atm_preset_is_the_authors_atms():
    cfg, model = _model("atm", 1024)
    enc = model.encoder
    # 3,075,163 used parameters in the authors' count = these + the logit scale + the 9 unused
    # rows of their 10-row subject table (2,250)
    assert count_parameters(enc) == 3_072_912
    assert count_parameters(model) == 3_072_913  # + the learnable logit scale
    shapes = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert shapes["token.weight"] == (250, 250)  # one token per channel's 250 samples
    assert shapes["subject_tokens.weight"] == (1, 250)
    assert shapes["layers.0.qkv.weight"] == (3 * 4 * 62, 250)  # 4 heads of 250 // 4 = 62
    assert shapes["layers.0.out.weight"] == (250, 248)
    assert shapes["layers.0.ff.0.weight"] == (256, 250) and shapes["layers.0.ff.3.weight"] == (250, 256)
    assert shapes["norm.weight"] == (250,)  # the Encoder's final LayerNorm
    assert shapes["ts_conv.temporal.weight"] == (40, 1, 1, 25)
    assert shapes["ts_conv.spatial.2.weight"] == (40, 40, 63, 1)
    assert shapes["projector.proj.weight"] == (1024, 1440)
    assert enc.token_select == "first" and len(enc.layers) == 1
    assert enc.layers[0].attn_dropout.p == 0.25 and enc.dropout.p == 0.25
    # the objective and the optimiser of train_model
    loss = model.loss
    assert (loss.clip_weight, loss.mse_weight, loss.text_weight) == (0.99, 0.0, 0.01)
    assert not loss.exp and not loss.normalize_brain and loss.text_loss == "clip"
    assert loss.logit_scale.item() == pytest.approx(np.log(1 / 0.07)) and loss.logit_scale.requires_grad
    opt = make_optimizer(list(model.parameters()), cfg.train)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["lr"] == 3e-4 and opt.defaults["weight_decay"] == 0.01
    assert opt.defaults["betas"] == (0.9, 0.999)
    t, d = cfg.train, cfg.data
    assert (t.batch_size, t.epochs, t.drop_last, d.train_trials) == (64, 40, True, "single")
    assert model.scaler.kind == "none" and cfg.model.image_model == "clip-vit-h-14"


def test_atm_e_preset_is_the_authors_atm_e():
    cfg, model = _model("atm-e", 1024)
    assert count_parameters(model.encoder) == 4_519_689  # authors: 4,519,690 with the logit scale
    assert not model.spec.subjects
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.train.lr) == (1024, 40, 3e-4)
    assert not model.loss.exp and not model.loss.normalize_brain


def test_nice_preset_is_the_authors_nice():
    cfg, model = _model("nice", 768)
    assert count_parameters(model.encoder) == 1_802_496  # Enc_eeg 103,680 + Proj_eeg 1,698,816
    assert not model.loss.logit_scale.requires_grad  # fixed temperature: not in the optimiser
    assert model.loss.temperature == pytest.approx(0.07)
    assert (model.loss.clip_weight, model.loss.mse_weight, model.loss.text_weight) == (1.0, 0.0, 0.0)
    assert model.loss.exp and model.loss.normalize_brain
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.train)
    assert type(opt) is torch.optim.Adam
    assert opt.defaults["betas"] == (0.5, 0.999) and opt.defaults["lr"] == 2e-4
    assert (cfg.train.batch_size, cfg.train.epochs, cfg.data.train_trials) == (1000, 200, "averaged")
    assert cfg.data.val_split == "images" and round(cfg.data.val_fraction * 16540) == 740
    weights = [m.weight for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert float(torch.cat([w.flatten() for w in weights]).std()) == pytest.approx(0.02, rel=0.05)


def test_ccpro_preset_is_the_authors_multimodal_recipe():
    cfg, model = _model("ccpro", 1024)
    spec = model.spec
    assert spec.modalities == ["image", "text", "edge", "depth"]
    assert spec.modality_kinds == ["image", "text", "image", "image"]
    assert spec.modality_levels == [3, 1, 3, 3]  # low / medium / high blur; text has one
    assert spec.levels[:3] == ["clip-rn50@foveated-k45", "clip-rn50@foveated", "clip-rn50@foveated-k57"]
    assert spec.levels[3] == "clip-rn50@text" and spec.levels[-1] == "clip-rn50@sharp"  # fused target
    assert spec.levels[4:7] == ["clip-rn50@edge+foveated-k45", "clip-rn50@edge+foveated",
                                "clip-rn50@edge+foveated-k57"]
    # four independent encoders (the authors' Cogcap list), no subject token, projector dropout 0.3
    trunks = model.encoder.trunks
    assert list(trunks) == spec.modalities and not spec.subjects
    for enc in trunks.values():
        assert type(enc).__name__ == "ATM" and enc.subject_tokens is None
        assert enc.layers[0].n_heads == 1 and enc.layers[0].ff[0].out_features == 256
        assert count_parameters(enc) == 3_074_668  # the authors' Cogcap: about 2.97 M
        assert enc.projector.proj.weight.shape == (1024, 1440)
        assert enc.projector.blocks[0][2].p == 0.3
    # CogcapFusion: 255 wide, 1 head, ff 510, 2 layers, one input per modality, → 1024
    fusion = model.fusion
    assert len(fusion.inputs) == 4 and fusion.inputs[0][0].weight.shape == (255, 1024)
    assert len(fusion.transformer.layers) == 2
    layer = fusion.transformer.layers[0]
    assert layer.self_attn.num_heads == 1 and layer.linear1.out_features == 510
    assert fusion.out.weight.shape == (1024, 255)
    assert count_parameters(fusion) == 2_421_484  # CogcapFusion's, less its last LayerNorm (2,048)
    assert [type(s).__name__ for s in model.modality_targets.sides.values()] == [
        "UncertaintyBlurPrior", "FixedSide", "UncertaintyBlurPrior", "UncertaintyBlurPrior"]
    assert model.modality_targets.sides["image"].gamma == 0.3
    mm = model.multimodal
    assert (mm.mask_count, mm.text_epochs, mm.trunk) == (1, 30, "separate")
    assert (mm.fusion_weight, mm.fusion_mse, mm.fusion_cos) == (1.0, 1.0, 0.5)
    # the loss: softplus(log(1/0.07)) fixed, unnormalised EEG, CLIP only, equal weights
    loss = model.loss
    assert loss.kind == "softplus" and not loss.logit_scale.requires_grad
    assert float(loss.scale()) == pytest.approx(2.727, abs=1e-3)
    assert not loss.normalize_brain and (loss.clip_weight, loss.mse_weight, loss.text_weight) == (1.0, 0.0, 0.0)
    assert set(mm.weights.values()) == {1.0}
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg.train)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["lr"] == 1e-4 and opt.defaults["weight_decay"] == 1e-4
    t, d = cfg.train, cfg.data
    assert (t.batch_size, t.epochs, t.select_by, d.train_trials) == (1024, 80, "val_top1", "averaged")
    assert model.scaler.kind == "none" and cfg.model.image_model == "clip-rn50"
