"""``mindsight.run.Run``: a trained run directory as one object (config, folds, models, images,
features, recordings), with clear errors for a folder that is not a run or a fold not trained."""

from __future__ import annotations

import json
import shutil

import pytest
import synthetic
import torch

from mindsight.config import RunConfig
from mindsight.errors import MissingFileError, UnknownNameError
from mindsight.run import Run
from mindsight.train import train_run
from mindsight.train.model import AlignmentModel

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, cache): ridge on one subject of a tiny release (30 training, 10 test
    images, 17 channels × 100 samples), two seeds."""
    eeg, images, cache = synthetic.cached_release(tmp_path_factory, n_train_concepts=10, exemplars=3,
                                                  n_test=10, noise=0.3)
    cfg = RunConfig.from_dict({"data": {"eeg": str(eeg), "images": str(images), "subjects": [1],
                                        "val_fraction": 0.2},
                               "model": {"encoder": "ridge"}, "train": {"seeds": [0, 1]}})
    out = train_run(cfg, tmp_path_factory.mktemp("runs") / "ridge", cache_dir=cache)
    return out, cache


def test_a_run_exposes_its_config_folds_models_features_and_recordings(trained):
    path, cache = trained
    run = Run.open(path, device="cpu", cache_dir=cache)
    assert run.path == path and run.device == "cpu" and run.config.model.encoder == "ridge"
    assert run.info["status"] == "complete" and run.info["folds"] == ["sub-01_seed-0", "sub-01_seed-1"]
    assert [f.name for f in run.folds] == ["sub-01_seed-0", "sub-01_seed-1"]
    first, second = run.folds
    assert run.fold() == first and run.fold("sub-01_seed-1") == second and second.seed == 1
    with pytest.raises(UnknownNameError, match="no fold 'sub-02_seed-0'; folds: sub-01_seed-0, sub-01_seed-1"):
        run.fold("sub-02_seed-0")
    assert run.fold_dir(first) == path / "folds" / "sub-01_seed-0"
    fold_dir, info = run.trained(first)
    assert fold_dir == run.fold_dir(first) and info["complete"] and info["seed"] == 0

    model = run.model(first)
    assert isinstance(model, AlignmentModel) and not model.training
    assert run.model(first) is model and run.model(first, "cpu") is model  # loaded once
    assert run.model(second) is not model
    assert model.spec.ch_names == synthetic.CH17 and model.spec.n_times == 100

    assert run.levels == ["efficientnet-lite0@sharp"]
    test = run.features("test")
    assert len(test) == 1 and test[0].features.shape == (10, 1280) and test[0].model == "efficientnet-lite0"
    assert run.features("test") is test  # read once
    assert run.features("train", ["efficientnet-lite0@sharp"])[0].features.shape == (30, 1280)
    assert run.images["test"].concept_names == tuple(sorted(run.images["test"].concept_names))
    targets = run.image_targets(first)  # a fixed image side: the features themselves
    assert torch.allclose(targets, torch.from_numpy(test[0].features))

    rec = run.recording(1, "test")
    assert rec.partition == "test" and rec.n_chans == 17 and rec.n_times == 100
    assert rec.n_trials == 10 * 4  # 10 images × 4 repetitions
    assert run.training(first).partition == "train"

    parts = run.components
    assert set(parts) == {"config", "info", "folds", "images", "models"}
    assert parts["models"]["sub-01_seed-0"] is model and len(parts["models"]) == 2


def test_a_run_reads_the_configured_channels_and_window(trained, tmp_path):
    path, cache = trained
    copy = tmp_path / "picked"
    shutil.copytree(path, copy)
    cfg = RunConfig.load(copy / "config.yaml")
    cfg.data.channels, cfg.data.tmin = ["O1", "Oz", "O2"], 0.0
    cfg.save(copy / "config.yaml")
    rec = Run.open(copy, device="cpu", cache_dir=cache).recording(1, "test")
    assert rec.ch_names == ("O1", "Oz", "O2") and rec.times[0] >= 0.0 and rec.n_times == 80


def test_a_folder_that_is_not_a_run_or_a_fold_not_trained_is_a_clear_error(trained, tmp_path):
    path, cache = trained
    with pytest.raises(MissingFileError, match="is not a run directory \\(no config.yaml\\); train one first"):
        Run.open(tmp_path)
    copy = tmp_path / "unfinished"
    shutil.copytree(path, copy)
    info = copy / "folds" / "sub-01_seed-1" / "fold.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "complete": False}))
    run = Run.open(copy, device="cpu", cache_dir=cache)
    assert isinstance(run.model(run.folds[0]), AlignmentModel)  # the finished fold still opens
    for call in (lambda: run.trained(run.folds[1]), lambda: run.model(run.folds[1]), lambda: run.components):
        with pytest.raises(MissingFileError, match="fold sub-01_seed-1 has not finished training; run "
                                                   "`mindsight train ... --out .* --resume` first"):
            call()
    (copy / "run.json").unlink()
    with pytest.raises(MissingFileError, match="run.json is missing"):
        _ = Run.open(copy).info


def test_evaluate_and_analyses_take_an_open_run(trained):
    """The Python API accepts a Run where it accepts a folder, and reads the same metrics."""
    from mindsight.analysis import Repetitions
    from mindsight.evaluate import evaluate_run

    path, cache = trained
    run = Run.open(path, device="cpu", cache_dir=cache)
    by_run = evaluate_run(run, single_trial=False, n_draws=5)
    by_path = evaluate_run(path, device="cpu", cache_dir=cache, single_trial=False, n_draws=5)
    assert by_run["top1"] == by_path["top1"] and by_run["k_way"] == by_path["k_way"]
    result = Repetitions().run(run, draws=2)
    assert json.loads((path / "analysis" / "repetitions.json").read_text()) == json.loads(json.dumps(result))
    assert result["draws"] == 2 and result["top1"][-1] == pytest.approx(by_run["top1"], abs=1e-6)
