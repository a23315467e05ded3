"""The GPU path: training (fp32, bf16 autocast + TF32, torch.compile), evaluation, reconstruction
and the distributed launcher on one GPU. Runs only on a machine with CUDA (CI has none).
Run them all with `MINDSIGHT_TEST_GPU=1 python -m pytest tests/test_gpu.py`."""

from __future__ import annotations

import pytest
import synthetic
import torch
from test_train import _cfg

from mindsight.evaluate.run import evaluate_fold
from mindsight.train.run import fit_recording

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("encoder", ["atm", "nice", "ridge"])
def test_training_on_the_gpu_learns(encoder, tmp_path):
    train, test, f_train, f_test = synthetic.problem(n_train_concepts=60, exemplars=4, n_test=100,
                                                     n_chans=8, n_times=100, noise=1.0)
    model, info = fit_recording(_cfg(encoder), train, f_train, seed=0, device="cuda",
                                workdir=tmp_path)
    assert next(model.parameters()).is_cuda
    metrics, emb = evaluate_fold(model, test, torch.from_numpy(f_test.features).cuda(), None)
    assert emb.is_cuda
    assert metrics["top1"] > 0.3  # 100-way chance: 0.01


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_bf16_autocast_and_tf32_train_as_well(precision, tmp_path):
    from mindsight.train.precision import uses_bf16

    train, test, f_train, f_test = synthetic.problem(n_train_concepts=60, exemplars=4, n_test=100,
                                                     n_chans=8, n_times=100, noise=1.0)
    cfg = _cfg("atm", precision=precision)
    model, _ = fit_recording(cfg, train, f_train, seed=0, device="cuda", workdir=tmp_path)
    assert uses_bf16(precision, "cuda") == (precision == "auto" and torch.cuda.is_bf16_supported())
    metrics, _ = evaluate_fold(model, test, torch.from_numpy(f_test.features).cuda(), None)
    assert metrics["top1"] > 0.3


def test_compiled_encoder_trains_and_saves_plain_keys(tmp_path):
    from mindsight.train.checkpoint import load_tensors

    train, _, f_train, _ = synthetic.problem(n_train_concepts=30, exemplars=4, n_test=20, n_chans=8,
                                             n_times=100)
    fit_recording(_cfg("nice", epochs=3, compile=True), train, f_train, seed=0, device="cuda", workdir=tmp_path)
    tensors, _ = load_tensors(tmp_path / "model.safetensors")
    assert not any("_orig_mod" in k for k in tensors)


def test_reconstruction_runs_on_the_gpu():
    from mindsight.generate.base import load_generator

    gen = load_generator("builtin", device="cuda")
    images = gen.generate(torch.randn(2, gen.embedding_dim, device="cuda"), steps=2, seed=0)
    assert images.shape[0] == 2 and torch.isfinite(images).all()


def test_distributed_launch_on_one_gpu(tmp_path):
    """`mindsight train --devices 1` through PyTorch's launcher on the GPU (NCCL needs one GPU per
    process; the multi-process equality test runs on CPUs with gloo)."""
    import json

    from layouts import write_image_set, write_official

    from mindsight.train.distributed import launch, train_worker

    images = write_image_set(tmp_path / "images", n_train_concepts=6, exemplars=8, n_test=3)
    write_official(tmp_path / "eeg", n_train=48, n_test=3, n_rep_train=2)
    cfg = _cfg("mlp", epochs=2, data={"eeg": str(tmp_path / "eeg"), "images": str(images), "subjects": [1],
                                       "val_fraction": 0.25})
    launch(train_worker, 1, cfg.to_dict(), str(tmp_path / "run"), False, str(tmp_path / "cache"), "model")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"
