"""Whole runs through the command line: train → RUN_DIR → evaluate → metrics.json."""

from __future__ import annotations

import json

import pytest
import synthetic
from test_cli import run, run_main

from mindsight.config import RunConfig
from mindsight.errors import LeakageError, MindsightError
from mindsight.evaluate import evaluate_run
from mindsight.train import train_run


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Two subjects' EEG driven by the EfficientNet-Lite0 embeddings of 30 + 10 images."""
    return synthetic.cached_release(tmp_path_factory, subjects=(1, 2), n_train_concepts=10,
                                    exemplars=3, n_test=10, noise=0.3)


def _train_args(release, out, *extra):
    eeg, images, cache = release
    return ["train", "--eeg", eeg, "--images", images, "--subject", 1, "--out", out,
            "--cache-dir", cache, "--no-progress", "--set", "train.batch_size=16",
            "--set", "train.lr=3e-3", "--set", "data.val_fraction=0.2", *extra]


def test_train_then_evaluate_writes_the_documented_metrics(release, tmp_path):
    out = tmp_path / "run"
    result = run(*_train_args(release, out, "--encoder", "nice", "--epochs", 15, "--seed", 0,
                              "--seed", 1))
    assert result.exit_code == 0, result.output
    assert (out / "config.yaml").is_file() and (out / "folds" / "sub-01_seed-1" / "model.safetensors").is_file()
    result = run("evaluate", out, "--cache-dir", release[2], "--no-progress")
    assert result.exit_code == 0, result.output
    assert "10-way top-1" in result.output and "accuracy vs. averaged test repetitions" in result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_way"] == 10 and m["chance_top1"] == pytest.approx(0.1)
    assert set(m["k_way"]) == {"2", "4", "10"} and set(m["k_way"]["2"]) == {"top1", "top5"}
    assert set(m["classification"]) >= {"top1", "top5"}
    assert 0 < m["median_rank"] <= 1
    assert m["top1"] > m["chance_top1"]  # tiny data (24 training images); see test_train for margins
    assert m["repetitions"]["n"] == [1, 2, 4]
    assert m["ci95"]["over"] == "seeds" and m["ci95"]["top1"]["n"] == 2
    p = m["protocol"]
    assert p["dataset"] == "THINGS-EEG2" and p["test_set"] == "small" and p["subjects"] == [1] and p["encoder"] == "nice"
    assert p["image_model"] == "efficientnet-lite0" and p["selection"] == "validation"
    assert p["seeds"] == [0, 1] and set(p["epochs_chosen"]) == {"sub-01_seed-0", "sub-01_seed-1"}
    assert "torch" in p["versions"] and "mindsight" in p["versions"]
    assert (out / "repetitions.png").stat().st_size > 1000
    # the repetitions analysis: random subsets per n, all repetitions = evaluate's averaged score
    result = run("analyze", "repetitions", out, "--draws", 3, "--cache-dir", release[2], "--no-progress")
    assert result.exit_code == 0, result.output
    a = json.loads((out / "analysis" / "repetitions.json").read_text())
    assert a["n"] == [1, 2, 4] and a["mode"].startswith("evaluation only")
    assert a["top1"][-1] == pytest.approx(m["top1"], abs=1e-6)
    for fold in a["folds"].values():
        assert fold["draws"] == [3, 3, 1]
        assert all(lo <= v <= hi for v, (lo, hi) in zip(fold["top1"], fold["top1_ci95"], strict=True))
    assert (out / "analysis" / "repetitions.png").stat().st_size > 1000


def test_an_existing_run_needs_resume_and_the_same_config(release, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*_train_args(release, out, "--encoder", "ridge")).exit_code == 0
    assert run_main(*_train_args(release, out, "--encoder", "ridge")) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert run_main(*_train_args(release, out, "--encoder", "nice", "--resume")) == 2
    assert "model.encoder: 'ridge' → 'nice'" in capsys.readouterr().err
    assert run(*_train_args(release, out, "--encoder", "ridge", "--resume")).exit_code == 0


def test_unknown_names_list_the_available_ones(release, tmp_path, capsys):
    assert run_main(*_train_args(release, tmp_path / "a", "--encoder", "resnet")) == 2
    assert "unknown brain encoder 'resnet'; available: atm" in capsys.readouterr().err
    assert run_main(*_train_args(release, tmp_path / "b", "--image-model", "vgg")) == 2
    assert "unknown embedder 'vgg'; available:" in capsys.readouterr().err
    assert run_main(*_train_args(release, tmp_path / "c", "--image-model", "minilm")) == 2
    assert "does not embed images" in capsys.readouterr().err


def test_embedding_size_mismatch_between_checkpoint_and_features(release, tmp_path):
    eeg, images, cache = release
    out = tmp_path / "run"
    cfg = RunConfig.from_dict({"data": {"eeg": str(eeg), "images": str(images)},
                               "model": {"encoder": "ridge"}})
    train_run(cfg, out, cache_dir=cache)
    import mindsight.run as run_mod

    class Fake:  # features of the test images from another (768-d) model
        dim = 768
        features = None
        keys = ()

    orig = run_mod.level_tables  # what Run.features reads the feature tables with
    run_mod.level_tables = lambda *a, **k: [Fake()]
    try:
        with pytest.raises(MindsightError, match="embedding size mismatch.*1280-d.*768-d"):
            evaluate_run(out, cache_dir=cache)
    finally:
        run_mod.level_tables = orig


def test_leave_one_subject_out_trains_fresh_models_without_the_test_subject(release, tmp_path):
    eeg, images, cache = release
    cfg = RunConfig.from_dict({
        "protocol": "loso", "data": {"eeg": str(eeg), "images": str(images), "subjects": [1, 2],
                                     "val_fraction": 0.2},
        "model": {"encoder": "atm", "params": {"d_model": 32, "n_heads": 2, "d_ff": 32}},
        "train": {"epochs": 2, "batch_size": 16}})
    out = train_run(cfg, tmp_path / "loso", cache_dir=cache)
    f1 = json.loads((out / "folds" / "sub-01_seed-0" / "fold.json").read_text())
    assert f1["train_subjects"] == [2] and f1["test_subject"] == 1
    m = evaluate_run(out, cache_dir=cache, single_trial=False)
    assert set(m["per_subject"]) == {"1", "2"} and m["ci95"]["over"] == "subjects"
    assert m["protocol"]["protocol"] == "loso"


def test_pooled_protocol_trains_one_model_on_all_subjects_and_tests_each(release, tmp_path):
    eeg, images, cache = release
    cfg = RunConfig.from_dict({
        "protocol": "pooled", "data": {"eeg": str(eeg), "images": str(images), "subjects": [1, 2],
                                       "val_fraction": 0.2},
        "model": {"encoder": "atm", "params": {"d_model": 32, "n_heads": 2, "d_ff": 32}},
        "train": {"epochs": 1, "batch_size": 16}})
    out = train_run(cfg, tmp_path / "pooled", cache_dir=cache)
    assert sorted(p.name for p in (out / "folds").iterdir()) == ["pooled_seed-0"]
    info = json.loads((out / "folds" / "pooled_seed-0" / "fold.json").read_text())
    assert info["train_subjects"] == [1, 2]
    m = evaluate_run(out, cache_dir=cache, single_trial=False)
    assert set(m["per_subject"]) == {"1", "2"} and m["protocol"]["protocol"] == "pooled"
    for s in (1, 2):
        assert (out / "folds" / "pooled_seed-0" / f"test_embeddings_sub-0{s}_seed-0.safetensors").is_file()


def test_overlapping_train_and_test_concepts_are_refused(release, tmp_path):
    eeg, images, cache = release
    import shutil

    imgs = tmp_path / "images"
    shutil.copytree(images, imgs)
    src = next((imgs / "training_images").iterdir())
    shutil.copytree(src, imgs / "test_images" / src.name.replace("00001", "00011"))
    cfg = RunConfig.from_dict({"data": {"eeg": str(eeg), "images": str(imgs)},
                               "model": {"encoder": "ridge"}})
    with pytest.raises(LeakageError, match="both the training and the test images"):
        train_run(cfg, tmp_path / "run", cache_dir=cache)
