"""Inputs at any scale: the input scaler makes volts, tesla and whitened data train alike."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import synthetic
import torch

from mindsight.config import RunConfig
from mindsight.errors import DataFormatError
from mindsight.evaluate.run import evaluate_fold
from mindsight.train.checkpoint import save_tensors
from mindsight.train.run import fit_recording
from mindsight.train.scaler import InputScaler, channel_correlation

# 8 posterior 10-05 names: the brain module's spatial attention needs sensor positions
CHANNELS = ("O1", "Oz", "O2", "PO3", "POz", "PO4", "P3", "P4")
PARAMS = {
    "atm": {"d_model": 32, "n_heads": 4, "d_ff": 32},
    "nice": {},
    "brainmodule": {"hidden": 32, "depth": 2, "features": 64, "n_virtual_channels": 16,
                    "pos_dim": 288},
    "ridge": {},
}


@pytest.fixture(scope="module")
def problem():
    train, test, f_train, f_test = synthetic.problem(
        n_train_concepts=40, exemplars=4, n_test=50, dim=16, n_reps=2, n_chans=8, n_times=64,
        noise=1.0, seed=0)
    named = {"ch_names": CHANNELS}
    return (dataclasses.replace(train, **named), dataclasses.replace(test, **named), f_train,
            f_test)


def _scaled(rec, factor: float):
    return dataclasses.replace(rec, data=(rec.data * np.float32(factor)).astype(np.float32))


def _cfg(encoder: str, scaler: str = "robust") -> RunConfig:
    return RunConfig.from_dict({
        "data": {"scaler": scaler, "train_trials": "averaged"},  # the scaler sees the averages
        "model": {"encoder": encoder, "params": PARAMS[encoder]},
        "train": {"epochs": 12, "batch_size": 64, "lr": 1e-3, "text_weight": 0.0, "patience": None},
    })


def _top1(encoder: str, problem, factor: float, scaler: str = "robust") -> float:
    train, test, f_train, f_test = problem
    model, _ = fit_recording(_cfg(encoder, scaler), _scaled(train, factor), f_train, seed=0)
    metrics, _ = evaluate_fold(model, _scaled(test, factor), torch.from_numpy(f_test.features), None,
                               single_trial=False)
    return metrics["top1"]


@pytest.mark.parametrize("encoder", ["atm", "nice", "brainmodule", "ridge"])
def test_same_accuracy_in_any_unit(problem, encoder):
    """Whitened-like (≈ 1), volts (× 1e-6) and tesla (× 1e-12): the same model up to rounding."""
    base = _top1(encoder, problem, 1.0)
    assert base > 0.2  # 50-way chance: 0.02
    for factor in (1e-6, 1e-12):
        assert _top1(encoder, problem, factor) == pytest.approx(base, abs=0.04), factor


def test_whitened_inputs_learn_alike_in_any_unit(problem):
    base = _top1("nice", problem, 1.0, "whiten")
    assert base > 0.2
    assert _top1("nice", problem, 1e-12, "whiten") == pytest.approx(base, abs=0.04)


def test_unscaled_volts_are_refused_with_a_reason(problem):
    train, _, f_train, _ = problem
    with pytest.raises(DataFormatError, match=r"typical amplitude of .*e-0[67].*volts or tesla"):
        fit_recording(_cfg("nice", scaler="none"), _scaled(train, 1e-6), f_train, seed=0)
    fit_recording(_cfg("ridge", scaler="none"), train, f_train, seed=0)  # unit scale is fine


def test_statistics_come_from_training_trials_only_and_travel_with_the_model(problem, tmp_path):
    train, test, f_train, _ = problem
    model, _ = fit_recording(_cfg("ridge"), _scaled(train, 1e-6), f_train, seed=0)
    tr, _ = train.split_validation(0.1, seed=0)
    fitting = torch.from_numpy(np.asarray(tr.average_repetitions().data) * np.float32(1e-6))
    expect = InputScaler(8).fit(fitting)  # the fit split only: no validation, no test values
    assert torch.allclose(model.scaler.center, expect.center)
    assert torch.allclose(model.scaler.scale, expect.scale)
    assert float(model.scaler.scale.mean()) == pytest.approx(1e-6 * float(
        InputScaler(8).fit(torch.from_numpy(np.asarray(tr.average_repetitions().data))).scale.mean()),
        rel=1e-4)
    state = model.state_dict()
    assert "scaler.center" in state and "scaler.scale" in state
    save_tensors(tmp_path / "m.safetensors", state, {})


def test_robust_scaler_matches_scikit_learn_and_clamps():
    from sklearn.preprocessing import RobustScaler

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, 40, generator=gen) * torch.tensor([1e-5, 3e-5, 1e-6])[:, None] + 2e-6
    x[0, 0, 0] = 1.0  # an artefact: 1 V on an EEG channel
    scaler = InputScaler(3).fit(x)
    flat = x.numpy().astype(np.float64).transpose(0, 2, 1).reshape(-1, 3)
    ref = RobustScaler().fit(flat)
    np.testing.assert_allclose(scaler.center.numpy(), ref.center_, rtol=1e-5)
    np.testing.assert_allclose(scaler.scale.numpy(), ref.scale_, rtol=1e-5)
    z = scaler(x)
    assert float(z.max()) == 20.0  # the artefact is clamped at +20 (Benchetrit et al.)
    assert abs(float(z[:, 1:].median())) < 0.05
    standard = InputScaler(3, "standard").fit(x[1:])
    assert float(standard(x[1:]).std()) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(DataFormatError, match="constant"):
        InputScaler(3).fit(torch.full((5, 3, 10), 3e-6))


def test_whiten_scaler_decorrelates_channels_in_any_unit():
    """``whiten``: the MVNN ('epochs') whitener of the training trials, from the same estimator
    as ``mindsight preprocess``; correlated channels come out decorrelated with unit variance,
    and volts give the same output as unit-scale data."""
    from mindsight.preprocess.mvnn import inverse_sqrt, noise_covariance

    gen = torch.Generator().manual_seed(1)
    mixing = torch.eye(6) + 0.8 * torch.randn(6, 6, generator=gen)  # strongly correlated channels
    x = torch.einsum("ij,njt->nit", mixing, torch.randn(200, 6, 200, generator=gen))
    scaler = InputScaler(6, "whiten", clamp=None).fit(x)
    assert set(dict(scaler.named_buffers())) == {"center", "whitener"}  # saved with the model
    flat = x.double().numpy()
    centred = flat - np.median(flat.transpose(0, 2, 1).reshape(-1, 6), axis=0)[:, None]
    expect = inverse_sqrt(noise_covariance(centred[:, None], "epochs"))
    np.testing.assert_allclose(scaler.whitener.numpy(), expect, rtol=1e-4, atol=1e-6)

    def off_diagonal(v):  # mean |correlation| between different channels
        return channel_correlation(v.transpose(1, 2).reshape(-1, 6).double().numpy())

    z = scaler(x)
    assert off_diagonal(x) > 0.2 and off_diagonal(z) < off_diagonal(x) / 5
    assert float(z.std()) == pytest.approx(1.0, abs=0.2)
    volts = InputScaler(6, "whiten", clamp=None).fit(x * 1e-6)
    torch.testing.assert_close(volts(x * 1e-6), scaler(x), rtol=1e-3, atol=1e-3)


def test_unwhitened_data_get_a_note_pointing_to_the_whitener(caplog):
    gen = torch.Generator().manual_seed(2)
    common = torch.randn(50, 1, 100, generator=gen)
    correlated = common + 0.3 * torch.randn(50, 6, 100, generator=gen)
    with caplog.at_level("INFO", logger="mindsight"):
        InputScaler(6).fit(torch.randn(50, 6, 100, generator=gen))
        assert not caplog.records
        InputScaler(6).fit(correlated)
    assert len(caplog.records) == 1 and "data.scaler: whiten" in caplog.records[0].getMessage()
