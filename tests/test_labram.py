"""LaBraM (AVDE stage 1): channel table, resampling to whole 200 Hz patches, both weight formats,
layer-wise lr decay, a frozen trunk, resume with several parameter groups, and learning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mindsight.config import TrainConfig
from mindsight.encoders import build_encoder
from mindsight.encoders.labram import LABRAM_CHANNELS, Resampler, labram_channel_index
from mindsight.errors import ConfigError, DataFormatError, MissingFileError
from mindsight.train.data import TrialTensors
from mindsight.train.fit import Targets, fit, make_optimizer, optimizer_groups, retrieval_top1
from mindsight.train.model import AlignmentModel, ModelSpec

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"num_layers": 2, "num_heads": 4, "conv_out_channels": 4, "drop_path": 0.0}  # width 100
CHANS = ["Fp1", "Fz", "F3", "F4", "C3", "Cz", "C4", "T7", "T8", "P7",
         "P3", "Pz", "P4", "P8", "PO7", "POz", "PO8", "O1", "Oz", "O2"]
N_IMG, DIM = 40, 16


def _labram(n_times=250, sfreq=250.0, ch_names=CHANS, **params):
    return build_encoder("labram", n_chans=len(ch_names), n_times=n_times, sfreq=sfreq,
                         n_outputs=DIM, ch_names=ch_names, **{**TINY, **params})


def _bd_labram(n_times=1600, **params):
    """braindecode's Labram for the tiny size, as published weights would come (10 s epochs)."""
    from braindecode.models import Labram

    kw = {"num_layers": 2, "num_heads": 4, "conv_out_channels": 4, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(1)
        return Labram(n_times=n_times, n_outputs=0, n_chans=128, sfreq=200, **kw)


def _original_keys(bd_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under the original LaBraM pretraining model's names (``student.`` +
    ``pos_embed``, ``time_embed`` of 16 rows, ``patch_embed.conv1``, ``mlp.fc1``/``fc2``),
    with the pretraining-only tensors it also holds."""
    out = {}
    for key, value in bd_state.items():
        key = (key.replace("position_embedding", "pos_embed").replace("temporal_embedding", "time_embed")
               .replace("patch_embed.temporal_conv.", "patch_embed.")
               .replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.2.", ".mlp.fc2."))
        if key == "time_embed":
            value = torch.cat([value, torch.randn(1, 16 - value.shape[1], value.shape[2])], 1)
        out[f"student.{key}"] = value
    out["student.mask_token"] = torch.zeros(1, 1, 100)
    out["student.lm_head.weight"] = torch.zeros(8, 100)
    out["lm_head.weight"] = torch.zeros(8, 100)
    out["logit_scale"] = torch.ones(())
    return out


# --- channels and sampling ---------------------------------------------------------------------

def test_channels_map_onto_labrams_table_case_insensitively():
    from braindecode.models.labram import LABRAM_CHANNEL_ORDER

    assert list(LABRAM_CHANNELS) == LABRAM_CHANNEL_ORDER  # 128 rows of the pretrained embedding
    assert labram_channel_index(["Fp1", "cz", "O2", "T3", "fTT9H"]) == [0, 41, 82, 88, 114]
    enc = _labram()
    assert enc.input_chans.tolist() == [0] + [i + 1 for i in labram_channel_index(CHANS)]
    from mindsight.io.eeg_imagenet import CH_NAMES_62
    from mindsight.io.things_eeg2 import CH_NAMES_63

    labram_channel_index(CH_NAMES_63)  # both datasets' montages are in the table
    labram_channel_index(CH_NAMES_62)


def test_an_unknown_channel_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"XYZ, MLC11 are not in LaBraM's channel table.*data.channels"):
        labram_channel_index(["Fp1", "XYZ", "MLC11"])
    with pytest.raises(ConfigError, match="needs the names"):
        build_encoder("labram", n_chans=3, n_times=250, sfreq=250.0, n_outputs=DIM, **TINY)


@pytest.mark.parametrize("sfreq, n_times, n_patches, signal", [
    (250.0, 250, 1, 200),    # THINGS-EEG2, 1 s: exactly one patch (AVDE's input)
    (1000.0, 500, 1, 100),   # EEG-ImageNet, 0.5 s: zero-padded to one patch
    (1000.0, 2600, 2, 400),  # 2.6 s: two whole patches, the remaining 0.6 s dropped
    (200.0, 200, 1, 200),    # already LaBraM's rate: untouched
])
def test_epochs_are_resampled_to_200_hz_in_whole_patches(sfreq, n_times, n_patches, signal):
    enc = _labram(n_times=n_times, sfreq=sfreq)
    t = torch.arange(n_times) / sfreq
    x = torch.sin(2 * torch.pi * 5 * t).expand(2, len(CHANS), -1).contiguous()
    patches = enc.to_patches(x)
    assert enc.n_patches == n_patches and patches.shape == (2, len(CHANS), n_patches * 200)
    want = torch.sin(2 * torch.pi * 5 * torch.arange(signal) / 200)
    inner = slice(20, signal - 20)  # edges: filter transients
    assert torch.allclose(patches[0, 0, inner], want[inner], atol=5e-3)
    assert torch.count_nonzero(patches[..., signal:]) == 0  # padding, if any, is zeros
    if sfreq == 200.0:
        assert torch.equal(patches, x)
    assert enc(x).shape == (2, DIM)


def test_resampler_is_scipys_polyphase_resampling_away_from_the_edges():
    from scipy.signal import resample_poly

    x = torch.randn(3, 250, generator=torch.Generator().manual_seed(0))
    r = Resampler(250.0)
    assert (r.up, r.down) == (4, 5) and r(x).shape == (3, 200)
    ref = resample_poly(x.numpy(), 4, 5, axis=-1)
    assert np.allclose(r(x).numpy()[:, 30:-30], ref[:, 30:-30], atol=1e-5)
    high = torch.sin(2 * torch.pi * 150 * torch.arange(500) / 1000)  # above the new Nyquist
    assert Resampler(1000.0)(high)[10:-10].abs().max() < 0.01


# --- pretrained weights --------------------------------------------------------------------------

def _trunk_equal(enc, bd_state, skip=()):
    own = enc.trunk.state_dict()
    for key, value in bd_state.items():
        if key in skip or key not in own:
            continue
        if key == "temporal_embedding":
            value = value[:, : own[key].shape[1]]
        assert torch.equal(own[key], value), key


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_braindecode_weights_load_by_name(tmp_path, suffix):
    bd = _bd_labram(use_mean_pooling=False).state_dict()
    path = tmp_path / f"labram{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in bd.items()}, str(path))
    else:
        torch.save(bd, path)
    from mindsight.encoders.labram import load_labram_weights

    enc = _labram(mean_pooling=False)
    report = load_labram_weights(enc.trunk, path)
    assert report == {"missing": [], "unexpected": []}
    _trunk_equal(enc, bd)
    enc = _labram(mean_pooling=False, weights=str(path))  # the encoder parameter does the same
    _trunk_equal(enc, bd)


def test_original_checkpoint_loads_into_the_same_trunk(tmp_path):
    bd = _bd_labram(use_mean_pooling=False).state_dict()
    path = tmp_path / "labram-base.pth"
    torch.save({"model": _original_keys(bd), "epoch": 49}, path)
    from mindsight.encoders.labram import load_labram_weights

    enc = _labram(mean_pooling=False)
    report = load_labram_weights(enc.trunk, path)
    assert report["missing"] == []  # every trunk tensor came from the file
    assert report["unexpected"] == ["lm_head.weight", "mask_token"]  # pretraining-only
    _trunk_equal(enc, bd)
    # AVDE's mean pooling: the pretrained final norm has no place, its fc_norm starts fresh
    pooled = _labram(mean_pooling=True)
    report = load_labram_weights(pooled.trunk, path)
    assert report["missing"] == ["fc_norm.bias", "fc_norm.weight"] and "norm.weight" in report["unexpected"]


def test_wrong_files_are_refused_in_one_line(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(3)}}, other)
    with pytest.raises(DataFormatError, match=r"resnet.pth: neither LaBraM's checkpoint .* conv1.weight"):
        _labram(weights=str(other))
    wide = tmp_path / "wide.pt"
    torch.save(_bd_labram(conv_out_channels=8, num_heads=4).state_dict(), wide)  # width 200
    with pytest.raises(DataFormatError, match=r"wide.pt: cls_token has shape \(1, 1, 200\) but this "
                                              r"LaBraM needs \(1, 1, 100\).*num_layers"):
        _labram(weights=str(wide))
    with pytest.raises(MissingFileError, match="weights"):
        _labram(weights=str(tmp_path / "absent.pth"))
    short = tmp_path / "short.pt"
    torch.save(_bd_labram(n_times=200).state_dict(), short)  # temporal embedding for one patch
    with pytest.raises(DataFormatError, match="temporal_embedding .* too few rows for 2 patch"):
        _labram(n_times=2600, sfreq=1000.0, weights=str(short))


# --- fine-tuning ---------------------------------------------------------------------------------

def test_layer_decay_gives_labrams_learning_rates():
    enc = _labram(layer_decay=0.5)
    lr_of, wd_of = {}, {}
    for group in enc.param_groups(1.0):
        for p in group["params"]:
            lr_of[id(p)], wd_of[id(p)] = group["lr"], group.get("weight_decay")
    named = dict(enc.named_parameters())
    # 2 blocks: embeddings decay^3, block i decay^(2 - i), the rest the full lr
    expect = {"trunk.cls_token": 0.125, "trunk.position_embedding": 0.125,
              "trunk.patch_embed.temporal_conv.conv1.weight": 0.125,
              "trunk.blocks.0.attn.qkv.weight": 0.25, "trunk.blocks.1.mlp.0.weight": 0.5,
              "trunk.temporal_embedding": 1.0, "trunk.fc_norm.weight": 1.0, "head.proj.weight": 1.0}
    for name, lr in expect.items():
        assert lr_of[id(named[name])] == pytest.approx(lr), name
    assert set(lr_of) == {id(p) for p in enc.parameters()}  # every parameter, once
    assert wd_of[id(named["trunk.blocks.0.attn.qkv.weight"])] is None  # the optimiser's decay
    for name in ("trunk.cls_token", "trunk.temporal_embedding", "trunk.blocks.0.attn.proj.bias",
                 "trunk.blocks.0.gamma_1", "head.norm.weight"):
        assert wd_of[id(named[name])] == 0.0, name


def _trials(patterns: torch.Tensor, reps: int, gen: torch.Generator) -> TrialTensors:
    n = len(patterns)
    x = patterns.repeat(reps, 1, 1) + torch.randn(n * reps, *patterns.shape[1:], generator=gen)
    image = torch.arange(n).repeat(reps)
    return TrialTensors(x=x, image=image, concept=image.clone(), subject=torch.zeros(n * reps, dtype=torch.long))


@pytest.fixture(scope="module")
def problem():
    """40 images, each a fixed random rank-1 pattern on 20 10-20 channels at 250 Hz (1 s) +
    unit noise; new repetitions for validation and test."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(N_IMG, DIM, generator=gen)
    patterns = (torch.randn(N_IMG, len(CHANS), 1, generator=gen)
                * torch.randn(N_IMG, 1, 250, generator=gen) * 1.5)
    return images, *(_trials(patterns, reps, gen) for reps in (4, 1, 2))


def _model(**params) -> AlignmentModel:
    torch.manual_seed(0)
    spec = ModelSpec(encoder="labram", n_chans=len(CHANS), n_times=250, sfreq=250.0, n_outputs=DIM,
                     params={**TINY, **params}, ch_names=CHANS)
    return AlignmentModel(spec)


def test_layer_decay_groups_reach_the_optimiser_and_other_encoders_keep_one_list():
    model = _model(layer_decay=0.5)
    cfg = TrainConfig(lr=1e-3, weight_decay=0.05)
    opt = make_optimizer(optimizer_groups(model, cfg.lr), cfg)
    lrs = sorted({g["lr"] for g in opt.param_groups})
    assert lrs == pytest.approx([1.25e-4, 2.5e-4, 5e-4, 1e-3])
    covered = [p for g in opt.param_groups for p in g["params"]]
    assert len(covered) == len({id(p) for p in covered}) == sum(1 for p in model.parameters() if p.requires_grad)
    spec = ModelSpec(encoder="mlp", n_chans=4, n_times=10, sfreq=100.0, n_outputs=DIM)
    other = AlignmentModel(spec)
    params = optimizer_groups(other, 1e-3)
    assert params == [p for p in other.parameters() if p.requires_grad]  # as before the hook


def test_frozen_trunk_stays_unchanged_while_the_head_learns(problem):
    images, train, val, _ = problem
    model = _model(freeze_trunk=True)
    trunk = {k: v.clone() for k, v in model.encoder.trunk.state_dict().items()}
    head = {k: v.clone() for k, v in model.encoder.head.state_dict().items()}
    assert all(g["lr"] == 1e-3 for g in model.encoder.param_groups(1e-3))  # only the head's groups
    fit(model, train, val, Targets(levels=[images]), TrainConfig(epochs=1, lr=1e-3, patience=None), seed=0)
    assert all(torch.equal(v, trunk[k]) for k, v in model.encoder.trunk.state_dict().items())
    assert any(not torch.equal(v, head[k]) for k, v in model.encoder.head.state_dict().items())
    model.train()
    assert not model.encoder.trunk.training  # a frozen trunk runs in eval mode


def test_an_interrupted_labram_run_resumes_to_the_same_result(problem, tmp_path):
    images, train, val, _ = problem
    targets = Targets(levels=[images])
    cfg = TrainConfig(epochs=2, lr=1e-3, patience=None, checkpoint_seconds=0, drop_last=True)
    ref = _model(layer_decay=0.7)
    fit(ref, train, val, targets, cfg, seed=0)
    part = _model(layer_decay=0.7)
    fit(part, train, val, targets, TrainConfig(**{**cfg.__dict__, "epochs": 1}), seed=0, workdir=tmp_path)
    resumed = _model(layer_decay=0.7)
    result = fit(resumed, train, val, targets, cfg, seed=0, workdir=tmp_path, resume=True)
    assert len(result.history) == 2
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k


def test_labram_learns_retrieval_well_above_chance(problem):
    images, train, val, test = problem
    model = _model(head_dropout=0.1)
    cfg = TrainConfig(epochs=8, batch_size=32, lr=2e-3, patience=None, select_by="val_top1")
    result = fit(model, train, val, Targets(levels=[images]), cfg, seed=0)
    chance = 1 / N_IMG
    assert result.best_score > 4 * chance, result.history
    emb, _ = model.embed(test.x, test.subject)
    top1 = retrieval_top1(emb, images, test.image)  # held-out repetitions
    assert top1 > 4 * chance, top1


def test_a_trained_run_reloads_without_its_pretrained_file_and_scratch_training_is_announced(
        problem, tmp_path, caplog):
    """The pretrained file is read when training starts; the run's own saved weights replace it,
    so rebuilding the trained model neither reads it nor needs it (it may have moved)."""
    import logging

    from mindsight.run import load_model

    images, train, val, _ = problem
    pretrained = tmp_path / "labram.pt"
    torch.save(_bd_labram().state_dict(), pretrained)
    model = _model(weights=str(pretrained), mean_pooling=True)
    with caplog.at_level(logging.WARNING, logger="mindsight"):
        fit(model, train, val, Targets(levels=[images]), TrainConfig(epochs=1, patience=None), seed=0,
            workdir=tmp_path / "fold")
    assert "from scratch" not in caplog.text
    pretrained.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mindsight"):
        again = load_model(tmp_path / "fold")
    assert "from scratch" not in caplog.text
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with caplog.at_level(logging.WARNING, logger="mindsight"):
        optimizer_groups(_model(), 1e-3)  # training without weights says so
    assert "trains from scratch" in caplog.text
