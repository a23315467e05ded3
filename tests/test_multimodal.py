"""CognitionCapturerPro's multimodal model: per-modality heads, uncertainty, fusion, masking,
checkpoints and evaluation."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import synthetic
import torch
from PIL import Image

from mindsight.config import RunConfig
from mindsight.errors import ConfigError
from mindsight.evaluate.run import evaluate_fold
from mindsight.run import load_model
from mindsight.train.multimodal import FUSED, modality_mask
from mindsight.train.run import check_method, fit_recording

pytestmark = pytest.mark.usefixtures("one_thread")

MODALITIES = ["image", "edge", "text"]
TEXT_EPOCHS = 9


def _cfg(trunk: str = "separate", epochs: int = 14, **multimodal) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"encoder": "mlp", "params": {"hidden": 64}, "modalities": MODALITIES,
                  "multimodal": {"trunk": trunk, "uncertainty": True, "head_hidden": 64,
                                 "fusion_hidden": 32, "fusion_ff": 64, **multimodal}},
        "train": {"epochs": epochs, "batch_size": 32, "lr": 3e-3, "text_weight": 0.0,
                  "patience": None, "select_by": "val_top1", "checkpoint_seconds": 1e9},
    })


@pytest.fixture(scope="module")
def problem():
    # image (three blur levels), edge and text targets: three linear maps of the latent factors
    return synthetic.multimodal_problem(seed=0)


def _fit(problem, cfg, workdir=None, on_epoch_end=None):
    train, _, f_train, _, mods = problem
    return fit_recording(cfg, train, f_train, seed=0, modalities=mods, workdir=workdir,
                         on_epoch_end=on_epoch_end)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def separate(problem, tmp_path_factory):
    """The authors' layout (one encoder per modality), the text term dropped after TEXT_EPOCHS."""
    work = tmp_path_factory.mktemp("separate")
    states = []
    model, info = _fit(problem, _cfg("separate", text_epochs=TEXT_EPOCHS), work,
                       lambda epoch, logs: states.append(_snapshot(live.encoder.trunks)))
    return model, info, states, work


@pytest.fixture(scope="module")
def shared(problem):
    return _fit(problem, _cfg("shared"))


live = None  # the model being trained (captured by the epoch callback through fit_recording)


@pytest.fixture(autouse=True, scope="module")
def _capture_live_model():
    """fit_recording builds its model inside; record it so the epoch callback can read it."""
    global live
    from mindsight.train import run as run_module

    original = run_module.AlignmentModel

    class Recorded(original):
        def __init__(self, spec):
            super().__init__(spec)
            global live
            live = self

    run_module.AlignmentModel = Recorded
    yield
    run_module.AlignmentModel = original


def _evaluate(model, problem):
    _, test, _, f_test, _ = problem
    tables = model.modality_tables([torch.from_numpy(t.features) for t in f_test])
    metrics, _ = evaluate_fold(model, test, tables[FUSED], None, modality_tables=tables,
                               single_trial=False, n_draws=5)
    return metrics


def test_each_modality_and_the_fusion_beat_chance_on_held_out_concepts(separate, problem):
    model, info, _, _ = separate
    m = _evaluate(model, problem)
    assert m["n_way"] == 100  # chance top-1 0.01 for every modality (text: 100 test concepts)
    mods = m["modalities"]
    assert set(mods) == {"image", "edge", "text", "fused"}
    assert mods["image"]["top1"] > 0.5 and mods["edge"]["top1"] > 0.5, mods  # measured 1.0, 1.0
    assert mods["text"]["top1"] > 0.3, mods  # measured 0.83
    assert mods["fused"]["top1"] > 0.3 and mods["fused"]["top5"] > 0.6, mods  # measured 0.77, 0.99
    assert mods["fused"] == {"top1": m["top1"], "top5": m["top5"]}  # the headline is the fusion
    last = info["history"][-1]
    for key in ("loss_image", "loss_edge", "loss_text", "loss_fused", "fused_clip", "fused_mse",
                "fused_cos", "val_top1_image", "val_top1_edge", "val_top1_text"):
        assert key in last, key
    assert info["history"][-1]["loss_fused"] < 0.8 * info["history"][0]["loss_fused"]


def test_a_shared_trunk_with_heads_trains_too(shared, problem):
    model, info = shared
    assert hasattr(model.encoder, "trunk") and set(model.encoder.heads) == set(MODALITIES)
    mods = _evaluate(model, problem)["modalities"]
    assert mods["image"]["top1"] > 0.3 and mods["edge"]["top1"] > 0.3, mods  # measured 0.81, 0.79
    assert mods["text"]["top1"] > 0.15 and mods["fused"]["top5"] > 0.4, mods  # measured 0.46, 0.82


def test_uncertainty_moves_pairs_between_blur_levels_and_evaluates_the_medium_one(separate, problem):
    model, info, _, _ = separate
    side = model.modality_targets.sides["image"]
    assert type(side).__name__ == "UncertaintyBlurPrior"
    assert type(model.modality_targets.sides["edge"]).__name__ == "FixedSide"  # one level
    moved = [h["ubp_low_image"] + h["ubp_high_image"] for h in info["history"]]
    assert max(moved) > 0 and info["history"][0]["ubp_medium_image"] < len(side.level)
    assert set(side.level.tolist()) > {1}
    levels = [torch.from_numpy(t.features) for t in problem[3]]
    tables = model.modality_tables(levels)
    assert torch.equal(tables["image"], levels[1])  # medium blur
    assert torch.equal(tables["edge"], levels[3]) and torch.equal(tables["text"], levels[4])
    assert torch.equal(tables[FUSED], levels[-1]) and torch.equal(model.image_table(levels), levels[-1])


def test_the_text_term_stops_after_text_epochs(separate):
    _, info, states, _ = separate
    assert len(states) == 14
    stop, end = states[TEXT_EPOCHS - 1], states[-1]
    text = [k for k in end if k.startswith("text.")]
    image = [k for k in end if k.startswith("image.")]
    assert text and all(torch.equal(stop[k], end[k]) for k in text)  # no step after text_epochs
    assert not all(torch.equal(stop[k], end[k]) for k in image)
    assert not all(torch.equal(states[0][k], stop[k]) for k in text)  # trained before
    assert all("loss_text" in h for h in info["history"])  # still reported


def test_masking_zeroes_exactly_mask_count_modalities(separate, problem):
    model = copy.deepcopy(separate[0])  # a training step updates the blur levels' state
    train, _, f_train, _, _ = problem
    zeroed = []
    hooks = [proj.register_forward_pre_hook(
        lambda mod, args, i=i: zeroed.append((i, bool((args[0] == 0).all()))))
        for i, proj in enumerate(model.fusion.inputs)]
    levels = [torch.from_numpy(t.features) for t in f_train]
    x, subject = torch.from_numpy(train.data[:32]).float(), torch.ones(32, dtype=torch.long)
    images, pairs = torch.from_numpy(train.trials.image[:32]).long(), torch.arange(32)
    gen = torch.Generator().manual_seed(0)
    count = []
    model.train()
    for mask_count in (0, 1, 2):
        model.multimodal.mask_count = mask_count
        for _ in range(5):
            zeroed.clear()
            model.multimodal_loss(x, subject, levels, images, pairs, generator=gen)
            count.append((mask_count, sum(z for _, z in zeroed)))
    zeroed.clear()
    model.embed(x, subject)
    assert len(zeroed) == 3 and not any(z for _, z in zeroed)  # evaluation masks nothing
    for h in hooks:
        h.remove()
    assert all(n == k for k, n in count), count
    drawn = torch.stack([~modality_mask(3, 1, gen) for _ in range(300)]).sum(0)
    assert drawn.sum() == 300 and bool((drawn > 60).all()), drawn  # uniform: about 100 each


def test_forward_gives_the_fused_embedding_in_the_image_space(separate, problem):
    model, _, _, _ = separate
    _, test, _, f_test, _ = problem
    x = torch.from_numpy(test.data[:10]).float()
    emb, txt = model.embed(x)
    outs = model.embed_modalities(x)
    assert emb.shape == (10, f_test[-1].dim) and txt.shape == (10, f_test[4].dim)  # 16, 8
    assert torch.allclose(emb, outs[FUSED]) and torch.allclose(txt, outs["text"])
    assert set(outs) == {"image", "edge", "text", FUSED}
    assert model.modality_kinds() == {"image": "image", "edge": "image", "text": "text"}


def test_the_spec_round_trips_through_the_checkpoint(separate, problem):
    model, info, _, work = separate
    loaded = load_model(work)
    spec = loaded.spec
    assert spec.modalities == MODALITIES and spec.modality_levels == [3, 1, 1]
    assert spec.modality_kinds == ["image", "image", "text"] and spec.text_model == "syn"
    assert spec.levels == ["syn@low", "syn@medium", "syn@high", "syn@edge", "syn@text",
                           "efficientnet-lite0@sharp"]  # the fused target: the configured image model
    assert spec.level_dims == [16, 16, 16, 12, 8, 16]
    assert spec.multimodal["trunk"] == "separate" and spec.multimodal["text_epochs"] == TEXT_EPOCHS
    assert spec.multimodal["weights"] == {"image": 1.0, "edge": 1.0, "text": 1.0}
    x = torch.from_numpy(problem[1].data[:20]).float()
    a, b = model.embed_modalities(x), loaded.embed_modalities(x)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert torch.equal(loaded.modality_targets.sides["image"].level,
                       model.modality_targets.sides["image"].level)
    saved = json.loads(json.dumps(spec.to_dict()))  # JSON-able
    assert saved["multimodal"]["mask_count"] == 1


class Interrupt(Exception):
    pass


def test_an_interrupted_multimodal_run_resumes_to_the_same_result(problem, tmp_path):
    cfg = _cfg("shared", epochs=4, text_epochs=2).override(["train.checkpoint_seconds=0"])
    ref, ref_info = _fit(problem, cfg, tmp_path / "ref")

    def stop_after_two(epoch, logs):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _fit(problem, cfg, tmp_path / "cut", stop_after_two)
    train, _, f_train, _, mods = problem
    resumed, info = fit_recording(cfg, train, f_train, seed=0, modalities=mods,
                                  workdir=tmp_path / "cut", resume=True)
    assert [h["loss"] for h in info["history"]] == [h["loss"] for h in ref_info["history"]]
    a, b = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights and the blur levels' state


@pytest.mark.parametrize("overrides, message", [
    (["model.image_side=ubp"], "image_side must be 'fixed'"),
    (["train.text_weight=0.1"], "text_weight.*no concept-name text term"),
    (["model.multimodal={trunk: shared, heads: 2}"], "unknown key.*heads.*MultimodalConfig"),
    (["model.multimodal={trunk: twin}"], "trunk must be one of"),
    (["model.multimodal={mask_count: 3}"], "mask_count must be in \\[0, 2\\]"),
    (["model.multimodal={weights: {depth: 1}}"], "weights names depth, not in model.modalities"),
    (["model.multimodal={fusion_hidden: 255, fusion_heads: 2}"], "multiple of fusion_heads"),
    (["model.modalities=[image, image]"], "lists a modality twice"),
    (["model.modalities=[]"], "model.multimodal is set but model.modalities is empty"),
])
def test_bad_multimodal_configurations_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _cfg().override(overrides)


def test_a_closed_form_encoder_is_refused():
    with pytest.raises(ConfigError, match="closed form.*multimodal"):
        check_method(_cfg().override(["model.encoder=ridge", "model.params={}"]))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """One subject's EEG driven by the EfficientNet-Lite0 embeddings of 30 + 10 images."""
    return synthetic.cached_release(tmp_path_factory, subjects=(1,), n_train_concepts=10,
                                    exemplars=3, n_test=10, noise=0.3)


@pytest.fixture(scope="module")
def multimodal_run(release, tmp_path_factory):
    """A shared-trunk multimodal run (image, text, edge; depth skipped offline) on ``release``."""
    from mindsight.train import train_run

    eeg, images, cache = release
    cfg = RunConfig.from_dict({
        "data": {"eeg": str(eeg), "images": str(images), "subjects": [1], "val_fraction": 0.2},
        "model": {"encoder": "mlp", "params": {"hidden": 32}, "image_model": "efficientnet-lite0",
                  "modalities": ["image", "text", "edge", "depth"],
                  "multimodal": {"trunk": "shared", "head_hidden": 32, "fusion_hidden": 16,
                                 "fusion_ff": 32}},
        "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "text_weight": 0.0, "patience": None,
                  "select_by": "val_top1", "device": "cpu"},
    })
    return train_run(cfg, tmp_path_factory.mktemp("mm") / "run", cache_dir=cache), cache


def test_a_multimodal_run_trains_and_evaluates_every_modality(multimodal_run):
    from mindsight.evaluate import evaluate_run

    out, cache = multimodal_run
    run = json.loads((out / "run.json").read_text())["protocol"]
    kept, notes = run["modalities"], run["modality_notes"]
    assert {"image", "text", "edge"} <= set(kept) and set(kept) | set(notes) == {
        "image", "text", "edge", "depth"}
    assert all("depth" in note for note in notes.values())  # only the depth model can be missing
    assert run["text_model"] == "minilm" and run["levels"][-1] == "efficientnet-lite0@sharp"
    m = evaluate_run(out, device="cpu", cache_dir=cache, single_trial=False, n_draws=5)
    mods = m["modalities"]
    assert set(mods) == set(kept) | {"fused"}
    assert all(set(v) == {"top1", "top5"} and 0 <= v["top1"] <= v["top5"] <= 1 for v in mods.values())
    assert mods["fused"]["top1"] == pytest.approx(m["top1"])
    assert m["per_subject"]["1"]["modalities"] == mods  # averaged over seeds/subjects as the rest
    assert m["protocol"]["modalities"] == kept and m["protocol"]["modality_notes"] == notes
    assert m["classification"] is not None  # the text modality's space, on the concept names
    from mindsight.evaluate.report import summary_tables

    table = next(rows for title, _, rows in summary_tables(m) if title.startswith("per modality"))
    assert [r["modality"] for r in table] == [*kept, "fused"] + [f"{k} (skipped)" for k in notes]


def test_reconstruct_compares_multimodal_with_image_only_conditioning(multimodal_run, tmp_path):
    from mindsight.generate.prior import PriorConfig
    from mindsight.generate.reconstruct import ReconstructConfig, reconstruct_run

    out, cache = multimodal_run
    rc = ReconstructConfig(max_images=4, steps=2, prior_config=PriorConfig(epochs=2))
    rep = reconstruct_run(out, rc, out=tmp_path / "rec", cache_dir=cache, device="cpu",
                          score=True)
    folders = sorted(d.name for d in (tmp_path / "rec").iterdir() if d.is_dir())
    assert folders == ["blurry", "chance", "image_only", "reconstructed", "seen", "upper_bound"]
    for name in ("image_only", "reconstructed"):
        assert len(list((tmp_path / "rec" / name).glob("*.png"))) == 4
    conds = rep["conditions"]
    assert set(conds) == {"reconstructed", "image_only"}
    assert "fused" in conds["reconstructed"]["conditioning"] and "image head" in conds["image_only"]["conditioning"]
    assert conds["reconstructed"]["prior"] is not None and conds["image_only"]["prior"] is not None
    # prompts: training concept names only (the text head's nearest), never a test label
    from mindsight.run import Run

    run = Run.open(out, device="cpu", cache_dir=cache)
    train_names = {n.replace("_", " ") for n in run.images["train"].concept_names}
    test_names = {n.replace("_", " ") for n in run.images["test"].concept_names}
    captions = conds["reconstructed"]["captions"]
    assert len(captions) == 4 and set(captions) <= train_names and not set(captions) & test_names
    assert conds["image_only"]["captions"] is None
    # every metric for both, on the same seen images; CLIP score null with its reason offline
    m = rep["metrics"]
    assert {"reconstructed", "image_only", "upper_bound", "chance"} <= set(m)
    for name in ("reconstructed", "image_only"):
        assert m[name]["pixcorr"] is not None and m[name]["ssim"] is not None
        assert m[name]["clip_score"] is None and m[name]["reasons"]["clip_score"]
    # two priors cached in the fold folder, one per conditioning
    fold_dir = next((out / "folds").iterdir())
    assert len(list(fold_dir.glob("prior-*.safetensors"))) == 2
    # without a prior both conditionings are mapped alike to the image scale; the pictures differ
    bare = reconstruct_run(out, ReconstructConfig(max_images=4, steps=2, prior=False, lowlevel=False),
                           out=tmp_path / "bare", cache_dir=cache, device="cpu", score=False)
    assert all("mapped per dimension" in c["conditioning"] for c in bare["conditions"].values())
    pictures = {k: np.stack([np.asarray(Image.open(p), dtype=float)
                             for p in sorted((tmp_path / "bare" / k).glob("*.png"))])
                for k in ("reconstructed", "image_only")}
    assert np.abs(pictures["reconstructed"] - pictures["image_only"]).mean() > 1.0
