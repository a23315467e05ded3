"""Training on several processes (torch.distributed, gloo on this CPU): two processes with
batch B each train exactly what one process with batch 2B trains; folds run in parallel."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from layouts import write_image_set, write_official

from mindsight.config import RunConfig
from mindsight.errors import MindsightError
from mindsight.train import train_run
from mindsight.train.checkpoint import load_tensors
from mindsight.train.distributed import World, launch, shard, train_worker


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    images = write_image_set(root / "images", n_train_concepts=6, exemplars=8, n_test=3)
    for s in (1, 2):
        write_official(root / "eeg", subject=s, n_train=48, n_test=3, n_rep_train=2, seed=s)
    return root / "eeg", images, tmp_path_factory.mktemp("ddp-cache")


def _config(eeg, images, batch_size, subjects=(1,)):
    return RunConfig.from_dict({
        "data": {"eeg": str(eeg), "images": str(images), "subjects": list(subjects), "val_fraction": 0.25,
                 "train_trials": "averaged"},
        "model": {"encoder": "mlp", "params": {"hidden": 64, "dropout": 0.0}},
        "train": {"epochs": 4, "batch_size": batch_size, "lr": 1e-3, "seeds": [0], "patience": None,
                  "text_weight": 0.0, "device": "cpu", "checkpoint_seconds": 0}})


def _fold(out):
    fold_dir = next((out / "folds").iterdir())
    info = json.loads((fold_dir / "fold.json").read_text())
    weights, _ = load_tensors(fold_dir / "model.safetensors")
    return info, weights


def test_folds_in_parallel_write_what_one_process_writes(dataset, tmp_path):
    eeg, images, cache = dataset
    cfg = _config(eeg, images, 16, subjects=(1, 2))
    single = train_run(cfg, tmp_path / "single", cache_dir=cache)
    launch(train_worker, 2, cfg.to_dict(), str(tmp_path / "par"), False, str(cache), "auto")
    for name in ("sub-01_seed-0", "sub-02_seed-0"):
        a = json.loads((single / "folds" / name / "fold.json").read_text())
        b = json.loads((tmp_path / "par" / "folds" / name / "fold.json").read_text())
        assert [h["val_loss"] for h in a["history"]] == pytest.approx([h["val_loss"] for h in b["history"]],
                                                                       rel=1e-5)
    run = json.loads((tmp_path / "par" / "run.json").read_text())
    assert run["parallel"]["mode"] == "folds" and run["status"] == "complete"


def test_a_failing_fold_does_not_stop_the_others(dataset, tmp_path, monkeypatch):
    """In-process stand-in for two processes: rank 0 of 2 gets fold 1 of 2 and fails; the run
    records it and raises one line naming it after the fold it could train."""
    eeg, images, cache = dataset
    import mindsight.train.run as run_module

    calls = []

    def failing(cfg, fold, *args, **kwargs):
        calls.append(fold.name)
        raise ValueError("out of memory (simulated)")

    monkeypatch.setattr(run_module, "train_fold", failing)

    class Pair(World):  # rank 0 of 2 without a process group: the others report nothing
        def all_gather_object(self, obj):
            return [obj, {}]

        def broadcast_object(self, obj):
            return obj

        def barrier(self):
            pass

    with pytest.raises(MindsightError, match="1 fold.*sub-01_seed-0: ValueError: out of memory"):
        train_run(_config(eeg, images, 16, subjects=(1, 2)), tmp_path / "run", cache_dir=cache,
                  world=Pair(0, 2), parallel="folds")
    assert calls == ["sub-01_seed-0"]  # rank 0's share only
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "failed" and "sub-01_seed-0" in run["failed_folds"]


def test_shards_cover_the_global_batch_in_order():
    batch = torch.arange(7)
    parts, sizes = zip(*(shard(batch, World(r, 3)) for r in range(3)), strict=True)
    assert sizes[0] == [3, 2, 2]
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 3], [5, 6, 5]]  # padded with a copy
    kept = np.concatenate([p[:n].numpy() for p, n in zip(parts, sizes[0], strict=True)])
    assert kept.tolist() == batch.tolist()


def test_two_gloo_processes_interrupted_and_resumed_equal_one_process_with_the_global_batch(dataset, tmp_path):
    """Two processes with batch 8 each, killed after their first checkpoint and resumed
    (`--resume`), end where one uninterrupted process with batch 16 ends: the same loss,
    validation curve and selected epoch, the same weights up to floating-point noise."""
    eeg, images, cache = dataset
    cfg = _config(eeg, images, 8)
    cfg.train.epochs = 6
    out = tmp_path / "ddp"
    code = ("import json, sys; from mindsight.config import RunConfig; "
            "from mindsight.train.distributed import launch, train_worker; "
            "launch(train_worker, 2, json.loads(sys.argv[1]), sys.argv[2], False, sys.argv[3], 'model')")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg.to_dict()), str(out), str(cache)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("folds/*/last.safetensors")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(out.glob("folds/*/last.safetensors")) and not list(out.glob("folds/*/fold.json"))
    launch(train_worker, 2, cfg.to_dict(), str(out), True, str(cache), "model")
    reference = _config(eeg, images, 16)
    reference.train.epochs = 6
    single = train_run(reference, tmp_path / "single", cache_dir=cache)
    (info1, w1), (info2, w2) = _fold(single), _fold(out)
    assert info2["world_size"] == 2 and info1["best_epoch"] == info2["best_epoch"]
    for h1, h2 in zip(info1["history"], info2["history"], strict=True):  # the same curves
        for key in ("loss", "val_loss", "val_top1"):
            assert h2[key] == pytest.approx(h1[key], rel=1e-4, abs=1e-6), key
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5)
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["parallel"] == {"processes": 2, "mode": "model", "device": "cpu"}


def test_cli_devices_reports_a_failing_process_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from mindsight.cli import app

    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--eeg", str(tmp_path / "none"),
                                      "--images", str(tmp_path / "none"), "--devices", "2"])
    # one line, the first process's own error (mindsight.cli.main prints it and exits with 2)
    assert isinstance(result.exception, MindsightError)
    assert re.match(r"process [01] of 2 failed: MissingFileError: .*image set directory not found$",
                    str(result.exception))
    assert "\n" not in str(result.exception)
    bad = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "run"), "--devices", "2", "--parallel", "all"])
    assert isinstance(bad.exception, MindsightError) and "--parallel must be one of" in str(bad.exception)


def _generators_equal(tmp_path, kind, weights, loss_key, one, two):
    """``one`` (trained in ``tmp_path/one``) against ``kind`` trained with config ``two`` by two
    processes on the same rendered set: the same weights and per-step losses."""
    import shutil

    from mindsight.train.distributed import generator_worker

    (tmp_path / "two").mkdir()
    shutil.copy(tmp_path / "one" / "data.safetensors", tmp_path / "two")  # the rendered set, once
    launch(generator_worker, 2, kind, str(tmp_path / "two"), two.to_dict(), False)
    w1, _ = load_tensors(one)
    w2, _ = load_tensors(tmp_path / "two" / weights)
    for k in w1:
        torch.testing.assert_close(w2[k].float(), w1[k].float(), rtol=2e-3, atol=2e-3)
    _, last1 = load_tensors(tmp_path / "one" / "last.safetensors")
    _, last2 = load_tensors(tmp_path / "two" / "last.safetensors")
    assert last2["state"][loss_key] == pytest.approx(last1["state"][loss_key], rel=1e-4)


def test_the_builtin_generator_on_two_processes_equals_one_with_the_global_batch(tmp_path):
    from mindsight.generate.networks import BuiltinConfig
    from mindsight.generate.train_builtin import GeneratorTrainConfig, train_builtin

    tiny = BuiltinConfig(embedding_dim=1280, ae_channels=[8, 16], unet_channels=[16, 32], attention_levels=[1],
                         cond_dim=32)
    cfg = GeneratorTrainConfig(model=tiny, max_concepts=6, exemplars=2, render_size=64, ae_steps=4,
                               diffusion_steps=4, batch_size=8, lr=3e-3, checkpoint_every=4)
    single = train_builtin(tmp_path / "one", cfg)
    cfg.batch_size = 4
    _generators_equal(tmp_path, "diffusion", "builtin.safetensors", "diffusion_losses", single, cfg)


def test_builtin_var_on_two_processes_equals_one_with_the_global_batch(tmp_path):
    from test_builtin_var import tiny_config

    from mindsight.generate.train_var import train_var

    single = train_var(tmp_path / "one", tiny_config(tokenizer_batch_size=4, var_batch_size=4, tokenizer_steps=4,
                                                     var_steps=4))
    half = tiny_config(tokenizer_batch_size=2, var_batch_size=2, tokenizer_steps=4, var_steps=4)
    _generators_equal(tmp_path, "var", "builtin-var.safetensors", "var_losses", single, half)
