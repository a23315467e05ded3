"""GPU training (runs only with MINDSIGHT_TEST_GPU=1 on a machine with CUDA; CI has none)."""

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
