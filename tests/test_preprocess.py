import logging
import pickle

import numpy as np
import pytest
from layouts import PEAK_S, RAW_CH, write_raw_release
from sklearn.discriminant_analysis import _cov

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io import read_dict, read_things_eeg2
from mindsight.io.containers import sniff
from mindsight.preprocess import (
    VARIANTS,
    inverse_sqrt,
    ledoit_wolf_cov,
    noise_covariance,
    preprocess_subject,
    whiten,
)

REPS = {"train": 2, "test": 3}


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    amps = write_raw_release(root, n_sessions=2, n_train=6, n_test=3, reps_train=2, reps_test=3)
    return root, amps


def test_official_pipeline_recovers_known_events(raw, tmp_path):
    root, amps = raw
    cfg = VARIANTS["official"].with_overrides(reps_per_session=REPS, mvnn=None)
    out = preprocess_subject(root, 1, tmp_path, cfg)
    for part, n_cond, n_rep in (("train", 6, 4), ("test", 3, 6)):
        assert sniff(out[part]) == "npy"  # the official container
        d = np.load(out[part], allow_pickle=True).item()
        data = d["preprocessed_eeg_data"]
        # posterior channels only, in recording order; 2 sessions merged
        assert d["ch_names"] == ["Pz", "P3", "PO7", "O1", "Oz", "O2"]
        assert data.shape == (n_cond, n_rep, 6, 100) and data.dtype == np.float64
        np.testing.assert_allclose(d["times"][[0, -1]], [-0.2, 0.79])
        evoked = data[:, :, d["ch_names"].index("Oz")].mean(axis=1)
        peak_t = d["times"][evoked.argmax(axis=1)]
        np.testing.assert_allclose(peak_t, PEAK_S, atol=0.011)
        np.testing.assert_allclose(evoked.max(axis=1), amps[part], rtol=0.08)
        # the 99999 target trials carry a 1 mV bump; none may survive
        assert np.abs(data).max() < 50 * amps[part].max()
        # baseline (None, 0) before resampling: pre-stimulus means are ~0 relative to the signal
        pre = d["times"] <= 0
        assert np.abs(data[..., pre].mean(-1)).max() < 0.02 * amps[part].max()


def test_nice_atm_variant_layout_and_reading_back(raw, tmp_path, cache_dir):
    root, _ = raw
    cfg = VARIANTS["nice-atm"].with_overrides(reps_per_session=REPS, channels=tuple(RAW_CH))
    out = preprocess_subject(root, 1, tmp_path, cfg)
    assert sniff(out["train"]) == "pickle"  # the NICE/ATM container
    with open(out["train"], "rb") as fh:
        d = pickle.load(fh)
    assert d["preprocessed_eeg_data"].shape == (6, 4, len(RAW_CH), 250)
    assert len(d["times"]) == 300  # as the release: times before the crop to 0..1 s
    rec = read_things_eeg2(tmp_path, 1, "test")
    assert rec.description["layout"] == "nice-atm" and rec.tmin == pytest.approx(0.0)
    assert rec.n_trials == 3 * 6 and rec.n_times == 250
    assert (tmp_path / "sub-01" / "preprocessing.json").is_file()


def test_each_variant_whitens_as_its_published_script():
    # official: eeg_encoding's preprocessing.py defaults to --mvnn_dim time, covariance from both
    # partitions; NICE/ATM: covariance over each epoch's time points, training partition only
    assert (VARIANTS["official"].mvnn, VARIANTS["official"].mvnn_partitions) == ("time", ("train", "test"))
    assert (VARIANTS["nice-atm"].mvnn, VARIANTS["nice-atm"].mvnn_partitions) == ("epochs", ("train",))


@pytest.mark.parametrize("variant, partitions", [("official", ("train", "test")), ("nice-atm", ("train",))])
def test_mvnn_applies_the_inverse_sqrt_of_the_configured_covariance(tmp_path, variant, partitions):
    root = tmp_path / "raw"
    write_raw_release(root, n_sessions=1, n_train=6, n_test=3)  # one session: one whitener
    base = VARIANTS[variant].with_overrides(reps_per_session=REPS, channels=tuple(RAW_CH))
    plain = preprocess_subject(root, 1, tmp_path / "plain", base.with_overrides(mvnn=None))
    white = preprocess_subject(root, 1, tmp_path / "white", base)
    x = {p: read_dict(plain[p])["preprocessed_eeg_data"] for p in plain}
    w = inverse_sqrt(np.mean([noise_covariance(x[p], base.mvnn) for p in partitions], axis=0))
    for p in plain:
        np.testing.assert_allclose(read_dict(white[p])["preprocessed_eeg_data"], whiten(x[p], w),
                                   rtol=1e-8, atol=1e-10)
    scale = np.sqrt(np.diag(np.linalg.inv(w @ w)))
    ratio = scale[RAW_CH.index("Oz")] / np.median(scale)
    if base.mvnn == "epochs":  # the evoked bump varies over an epoch's time points: it counts
        assert ratio > 3      # as noise, and the loud O1/Oz lose most of their scale
    else:  # across the repetitions at one time point the bump is constant: only noise is whitened
        assert ratio < 2


def test_batched_ledoit_wolf_equals_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 40, 7)) * rng.uniform(0.1, 10, size=7) + rng.normal(size=7)
    x[2, :, 3] = 1.5  # a constant channel
    ours = ledoit_wolf_cov(x)
    for b in range(5):
        np.testing.assert_allclose(ours[b], _cov(x[b], shrinkage="auto"), rtol=1e-10, atol=1e-12)


def test_inverse_sqrt_whitens():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    cov = a @ a.T + np.eye(5)
    w = inverse_sqrt(cov)
    np.testing.assert_allclose(w @ cov @ w.T, np.eye(5), atol=1e-10)
    with pytest.raises(DataFormatError, match="not positive definite"):
        inverse_sqrt(np.zeros((3, 3)))


def test_existing_output_is_kept_unless_overwrite(raw, tmp_path, caplog):
    root, _ = raw
    cfg = VARIANTS["official"].with_overrides(reps_per_session=REPS, mvnn=None)
    out = preprocess_subject(root, 1, tmp_path, cfg)
    mtime = out["train"].stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="mindsight"):
        preprocess_subject(root, 1, tmp_path, cfg)
    assert out["train"].stat().st_mtime_ns == mtime
    assert "sub-01: already preprocessed" in caplog.text and "skipping" in caplog.text
    preprocess_subject(root, 1, tmp_path, cfg, overwrite=True)
    assert out["train"].stat().st_mtime_ns != mtime


def test_too_few_repetitions_and_missing_sessions(raw, tmp_path):
    root, _ = raw
    cfg = VARIANTS["official"].with_overrides(reps_per_session={"train": 5, "test": 3}, mvnn=None)
    with pytest.raises(DataFormatError, match=r"ses-01/raw_eeg_training.npy: condition \d+ has \d repetition"):
        preprocess_subject(root, 1, tmp_path, cfg)
    with pytest.raises(MissingFileError, match="no raw sessions for sub-07"):
        preprocess_subject(root, 7, tmp_path)


def test_raw_without_stim_channel(tmp_path):
    ses = tmp_path / "raw_data/sub-01/ses-01"
    ses.mkdir(parents=True)
    for part in ("training", "test"):
        np.save(ses / f"raw_eeg_{part}.npy", {"raw_eeg_data": np.zeros((2, 100)), "ch_names": ["Oz", "Pz"],
                                              "ch_types": ["eeg", "eeg"], "sfreq": 1000.0})
    with pytest.raises(DataFormatError, match="no 'stim' channel"):
        preprocess_subject(tmp_path, 1, tmp_path / "out")
