"""Image views and the blur-prior methods (UBP, multi-level blur): views, caching, the selection
rule, the image module, and learning on data whose EEG follows a blurred view of the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import synthetic
import torch

from mindsight.config import RunConfig
from mindsight.embed import features as feat_mod
from mindsight.embed.features import FeatureTable, cache_path, image_features, level_names
from mindsight.embed.views import (
    STACKS,
    canonical,
    expand_views,
    foveated_blur,
    gaussian_kernel,
    get_view,
    opencv_sigma,
)
from mindsight.errors import (
    ConfigError,
    MissingFileError,
    UnknownNameError,
    WeightsUnavailableError,
)
from mindsight.evaluate.run import evaluate_fold
from mindsight.io.images import read_image_set
from mindsight.train.image_side import MultiLevelBlur, UncertaintyBlurPrior, build_image_side
from mindsight.train.run import check_method, fit_recording

CONFIGS = Path(__file__).parents[1] / "configs"


def _picture(seed: int = 0, size: int = 96):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


# --- views -------------------------------------------------------------------------------------

def test_every_view_is_deterministic_and_blurs_as_named():
    im = _picture()
    for name in ["sharp", "blur-2", "gauss-k21", "foveated", "foveated-k45"]:
        a, b = np.asarray(get_view(name)(im)), np.asarray(get_view(name)(im))
        assert np.array_equal(a, b), name
    sharp = np.asarray(im.resize((224, 224)), dtype=float)
    spread = [np.asarray(get_view(f"gauss-k{k}")(im), dtype=float).std() for k in (3, 21, 63)]
    assert spread[0] > spread[1] > spread[2]  # more blur, less pixel variance
    assert np.asarray(get_view("gauss-k3")(im)).shape == sharp.shape


def test_view_names_are_canonical_and_stacks_expand():
    assert canonical("gauss-k1") == canonical("blur-0") == "sharp"  # a 1-tap kernel is the identity
    assert canonical("foveated-k51") == "foveated"
    assert len(expand_views(["multi-blur"])) == 12 and expand_views(["multi-blur"])[0] == "sharp"
    assert expand_views(["ubp"]) == ["foveated-k45", "foveated", "foveated-k57"]
    assert level_names("m", ["ubp"], ["evnet"])[-1] == "evnet@sharp"
    assert set(STACKS) == {"multi-blur", "ubp"}


def test_opencv_kernel_sigma():
    assert opencv_sigma(51) == pytest.approx(8.0) and opencv_sigma(63) == pytest.approx(9.8)
    assert gaussian_kernel(21).sum() == pytest.approx(1.0)
    with pytest.raises(UnknownNameError, match="odd"):
        get_view("gauss-k4")


def test_unknown_view_lists_the_available_ones():
    with pytest.raises(UnknownNameError, match="available: sharp, blur-S.*stacks: multi-blur, ubp"):
        get_view("fovea")


def test_foveated_blur_is_sharpest_at_fixation():
    im = _picture(1, 224)
    px = np.asarray(im, dtype=float)
    diff = np.abs(np.asarray(foveated_blur(im), dtype=float) - px).mean(2)
    centre, corner = diff[100:124, 100:124].mean(), diff[:24, :24].mean()
    assert centre < 0.7 * corner  # the centre keeps half the sharp picture, the corner ~2.5 %
    small = foveated_blur(_picture(1, 64), size=None)  # any size: the kernel is scaled
    assert small.size == (64, 64)


# --- feature cache per (model, view) -------------------------------------------------------------

class _CountingEmbedder:
    """A tiny deterministic image embedder: mean colour and pixel spread of each picture."""

    name, dim, batch_size = "counting", 4, 8

    def __init__(self):
        self.calls = 0

    def load_batch(self, images):
        from mindsight.embed.base import open_image

        return [np.asarray(open_image(im), dtype=np.float32) for im in images]

    def encode(self, pixels):
        self.calls += 1
        return np.stack([np.r_[p.mean((0, 1)), p.std()] for p in pixels]).astype(np.float32)


def test_each_view_is_cached_under_its_own_key(tmp_path):
    synthetic.write_images(tmp_path / "images")
    part = read_image_set(tmp_path / "images")["test"]
    emb = _CountingEmbedder()
    sharp = image_features(part, "counting", cache_dir=tmp_path, embedder=emb)
    blurred = image_features(part, "counting", cache_dir=tmp_path, embedder=emb,
                             view="gauss-k21")
    assert cache_path("counting", "image", part.fingerprint(), tmp_path).is_file()
    assert cache_path("counting", "image", part.fingerprint(), tmp_path, "gauss-k21").is_file()
    assert blurred.meta["view"] == "gauss-k21" and sharp.meta["view"] == "sharp"
    assert not np.allclose(sharp.features[:, 3], blurred.features[:, 3])  # blur lowers the spread
    calls = emb.calls
    again = image_features(part, "counting", cache_dir=tmp_path, embedder=emb,
                           view="gauss-k21")
    assert emb.calls == calls and np.array_equal(again.features, blurred.features)  # from the cache


def test_a_view_missing_from_imported_features_says_which_and_how(tmp_path, monkeypatch):
    synthetic.write_images(tmp_path / "images")
    part = read_image_set(tmp_path / "images")["train"]
    FeatureTable(np.ones((len(part), 8), np.float32), part.files, "clip-vit-h-14", "image",
                 part.fingerprint()).save(cache_path("clip-vit-h-14", "image", part.fingerprint(), tmp_path))

    def no_weights(*a, **k):
        raise WeightsUnavailableError("no network")

    monkeypatch.setattr(feat_mod, "load_image_embedder", no_weights)
    assert image_features(part, "clip-vit-h-14", cache_dir=tmp_path).dim == 8  # the imported view
    with pytest.raises(MissingFileError, match=r"sharp view only; view 'gauss-k21'.*--view gauss-k21"):
        image_features(part, "clip-vit-h-14", cache_dir=tmp_path, view="gauss-k21")


# --- the image sides -----------------------------------------------------------------------------

def test_ubp_rule_picks_the_expected_levels_on_a_hand_made_batch():
    side = UncertaintyBlurPrior([4, 4, 4], 4, n_pairs=20)
    logits = torch.full((20,), 1.0)
    logits[:18] += torch.linspace(-0.1, 0.1, 18)
    logits[18], logits[19] = 9.0, -7.0  # a very confident pair and a very poor one
    pairs = torch.arange(20)
    side.observe(pairs, logits)
    # EMA with the initial 1: 0.3·logit + 0.7; bounds at its batch mean ± 1.96 std
    assert side.level[18] == 0 and side.level[19] == 2  # less blur / more blur
    assert (side.level[:18] == 1).all()
    assert torch.allclose(side.sim, 0.3 * logits + 0.7)
    levels = [torch.full((20, 4), float(i)) for i in range(3)]
    tgt = side.train_targets(levels, pairs)
    assert tgt[18, 0] == 0 and tgt[19, 0] == 2 and tgt[0, 0] == 1
    assert torch.equal(side.eval()(levels), levels[1])  # test images: the medium level
    assert side.summary() == {"ubp_low": 1, "ubp_medium": 18, "ubp_high": 1}


def test_ubp_needs_three_levels_and_unknown_sides_are_listed():
    with pytest.raises(ConfigError, match="three levels"):
        build_image_side("ubp", [4], 4)
    with pytest.raises(UnknownNameError, match="available: fixed, ubp, multiblur"):
        build_image_side("blurry", [4], 4)


def test_multiblur_mixes_levels_per_dimension_and_projects_other_sizes():
    torch.manual_seed(0)
    side = MultiLevelBlur([6, 6, 3], 6, hidden=8, dropout=0.5)
    w = side.level_weights()
    assert w.shape == (3 + 4, 6) and torch.allclose(w.sum(0), torch.ones(6))
    levels = [torch.randn(5, 6), torch.randn(5, 6), torch.randn(5, 3)]
    side.eval()
    assert torch.equal(side(levels), side(levels))  # no dropout at evaluation
    side.train()
    assert not torch.equal(side(levels), side(levels))
    assert side(levels).shape == (5, 6)


def test_closed_form_encoders_refuse_a_learned_image_side():
    cfg = RunConfig.from_dict({"model": {"encoder": "ridge", "image_side": "multiblur"}})
    with pytest.raises(ConfigError, match="closed form"):
        check_method(cfg)
    with pytest.raises(UnknownNameError, match="available: fixed, ubp, multiblur"):
        check_method(RunConfig.from_dict({"model": {"image_side": "blur-prior"}}))


# --- learning --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def blurred_problem():
    """EEG driven by a *blurred* view of each image: level 1 of three (sharp, blurred, more
    blurred), where each blur keeps a shrinking share of the sharp features' components."""
    train, test, f_tr, f_te = synthetic.problem(n_train_concepts=60, exemplars=4, n_test=100, dim=16,
                                                n_reps=2, n_chans=8, n_times=64, noise=1.0, seed=3)
    rng = np.random.default_rng(7)
    mix = [np.eye(16), None, None]
    for i, keep in ((1, 0.5), (2, 0.2)):
        mix[i] = keep * np.eye(16) + (1 - keep) * rng.normal(size=(16, 16)) / 4
    levels = {part: [FeatureTable((t.features @ m).astype(np.float32), t.keys, "synthetic", "image", t.fingerprint)
                     for m in mix] for part, t in (("train", f_tr), ("test", f_te))}
    # the EEG follows level 1: regenerate it from those features with the same brain
    for rec, part in ((train, "train"), (test, "test")):
        n_img = len(levels[part][1])
        eeg = synthetic.eeg_from_features(levels[part][1].features, 2, 8, 64, 1.0, seed=3)
        rec.data[:] = eeg.reshape(n_img * 2, 8, 64)
    return train, test, levels


@pytest.mark.parametrize("method, encoder, params", [
    ("ubp", "ubp", {}), ("multiblur", "multiblur", {"n_filters": 6, "hidden": 32}),
])
def test_blur_methods_beat_100_way_chance_by_a_wide_margin(blurred_problem, method, encoder, params):
    train, test, levels = blurred_problem
    cfg = RunConfig.from_dict({
        "data": {"train_trials": "averaged", "scaler": "standard"},
        "model": {"encoder": encoder, "params": params, "image_views": ["sharp", "blur-2", "blur-4"],
                  "image_side": method,
                  "image_side_params": {"hidden": 64, "dropout": 0.3} if method == "multiblur" else {}},
        "train": {"epochs": 30, "batch_size": 32, "lr": 1e-3, "text_weight": 0.0, "clip_weight": 1.0,
                  "patience": None, "normalize_brain": False,  # the authors' losses
                  "logit_scale": "unit" if method == "multiblur" else "softplus"},
    })
    torch.manual_seed(0)
    model, info = fit_recording(cfg, train, levels["train"], seed=0)
    table = model.image_table([torch.from_numpy(t.features) for t in levels["test"]])
    metrics, _ = evaluate_fold(model, test, table, None)
    assert metrics["n_way"] == 100
    assert metrics["top1"] > 0.2, metrics["top1"]  # chance: 0.01
    if method == "ubp":
        last = info["history"][-1]
        assert last["ubp_low"] + last["ubp_medium"] + last["ubp_high"] == info["n_train_trials"]
        assert last["ubp_medium"] < info["n_train_trials"]  # the rule moved some pairs


def test_blur_presets_are_valid_and_name_their_sources():
    for name, repo in (("ubp", "HaitaoWuTJU/Uncertainty-aware-Blur-Prior"),
                       ("multiblur", "makeitperfect/VisualEEGDecoding"),
                       ("multiblur-evnet", "lucaspiper99/evnet")):
        text = (CONFIGS / f"{name}.yaml").read_text()
        assert repo in text and "Not reproduced:" in text
        cfg = RunConfig.load(CONFIGS / f"{name}.yaml")
        assert cfg.model.image_side == name.split("-")[0]
        check_method(cfg)
