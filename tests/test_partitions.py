"""Header-only partition reading (mindsight.io.headers) and the check a run makes before training
(mindsight.train.checks): a test partition evaluate could not use is refused, naming both files,
without reading a single test value."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from layouts import (
    CH17,
    write_image_set,
    write_nice_atm,
    write_official,
    write_package_layout,
)
from test_things_meg import TEST_CATS, write_meg_images, write_official_meg

from mindsight.config import RunConfig
from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io import read_header, read_image_set, read_images, read_recording
from mindsight.io.things_meg import write_things_meg_atm
from mindsight.sensors import ctf_271
from mindsight.train.checks import check_matching_partitions, check_partitions

CH271 = list(ctf_271())


# -- every layout, with NaN in the test data (reading a test value would fail) --------------------
def _poison_dict(path: Path, key: str = "preprocessed_eeg_data") -> None:
    """Put a NaN into the data of a dict file, in its own container."""
    with open(path, "rb") as fh:
        is_npy = fh.read(6) == b"\x93NUMPY"
    if is_npy:
        d = np.load(path, allow_pickle=True).item()
        d[key][(0,) * d[key].ndim] = np.nan
        np.save(path, d)
    else:
        with open(path, "rb") as fh:
            d = pickle.load(fh)
        d[key][(0,) * d[key].ndim] = np.nan
        with open(path, "wb") as fh:
            pickle.dump(d, fh, protocol=4)


def make_official(tmp_path: Path):
    write_official(tmp_path / "eeg", n_rep_test=80)  # 3.3 MB of test data: memory-mapped
    _poison_dict(tmp_path / "eeg/sub-01/preprocessed_eeg_test.npy")
    return tmp_path / "eeg", read_image_set(write_image_set(tmp_path / "img"))


def make_nice_atm(tmp_path: Path):
    write_nice_atm(tmp_path / "eeg")
    _poison_dict(tmp_path / "eeg/sub-01/preprocessed_eeg_test.npy")
    return tmp_path / "eeg", read_image_set(write_image_set(tmp_path / "img"))


def make_package(tmp_path: Path):
    write_package_layout(tmp_path / "eeg")
    path = tmp_path / "eeg/processed/sub-01/preprocessed_eeg_test_sub-01.npy"
    arr = np.load(path)
    arr[0, 0, 0, 0, 0] = np.nan
    np.save(path, arr)
    return tmp_path / "eeg", read_image_set(write_image_set(tmp_path / "img"))


def make_meg_official(tmp_path: Path):
    df = write_official_meg(tmp_path / "bids")
    path = tmp_path / "bids/derivatives/preprocessed/preprocessed_P1-epo.fif"
    import mne

    epochs = mne.read_epochs(path, preload=True, verbose="error")
    tested = (df.trial_type == "test") | df.things_category_nr.isin(TEST_CATS)  # small and large
    epochs._data[np.flatnonzero(tested), 0, 0] = np.nan
    epochs.save(path, overwrite=True, verbose="error")
    return tmp_path / "bids", read_images(tmp_path / "bids", write_meg_images(tmp_path / "images", df))


def _atm_arrays():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(4, 3, 1, len(CH271), 201)).astype(np.float32)
    test = rng.normal(size=(2, 1, 3, len(CH271), 201)).astype(np.float32)  # 1.3 MB
    test[0, 0, 0, 0, 0] = np.nan
    return train, test, np.arange(201) / 200.0


def make_meg_atm(tmp_path: Path):
    train, test, times = _atm_arrays()
    write_things_meg_atm(tmp_path / "meg", 1, train, test, CH271, times)
    images = write_image_set(tmp_path / "img", n_train_concepts=4, exemplars=3, n_test=2)
    return tmp_path / "meg", read_image_set(images)


def make_meg_atm_torch(tmp_path: Path):
    import torch

    train, test, times = _atm_arrays()
    for name, arr in (("preprocessed_meg_training.pkl", train), ("preprocessed_meg_zs_test.pkl", test)):
        path = tmp_path / "meg" / "sub-01" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            pickle.dump({"meg_data": torch.from_numpy(arr), "ch_names": CH271,
                         "times": torch.from_numpy(times)}, fh, protocol=4)
    images = write_image_set(tmp_path / "img", n_train_concepts=4, exemplars=3, n_test=2)
    return tmp_path / "meg", read_image_set(images)


LAYOUTS = {"official": make_official, "nice-atm": make_nice_atm, "things-eeg2-dataset": make_package,
           "meg-official": make_meg_official, "meg-atm": make_meg_atm,
           "meg-atm-torch": make_meg_atm_torch}


def config(root: Path, images, **data) -> RunConfig:
    cfg = RunConfig()
    cfg.data.eeg, cfg.data.images = str(root), str(getattr(images, "root", images))
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg.validate()


def _no_loading(monkeypatch) -> None:
    """Every way a reader gets values (the float32 cache and its converters) now fails."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"data were read: {args[:1]}")

    import mindsight.io.cache as cache
    import mindsight.io.things_eeg2 as eeg2
    import mindsight.io.things_meg as meg

    for module, names in ((cache, ("load_float32", "load_float32_rows", "iter_float32_chunks")),
                          (eeg2, ("load_float32",)),
                          (meg, ("load_float32", "load_float32_rows", "lookup_float32"))):
        for name in names:
            monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("layout, test_set", [(name, "small") for name in LAYOUTS]
                         + [("meg-official", "large")])
def test_matching_partitions_pass_without_reading_a_test_value(layout, test_set, tmp_path,
                                                               cache_dir, monkeypatch):
    root, images = LAYOUTS[layout](tmp_path)
    if test_set == "large":
        images = read_images(root, images.root, test_set="large")
    with monkeypatch.context() as mp:
        _no_loading(mp)
        check_partitions(config(root, images, test_set=test_set), images, cache_dir=cache_dir)
        header = {p: read_header(root, 1, p, images, test_set=test_set, cache_dir=cache_dir)
                  for p in ("train", "test")}
    assert not list(cache_dir.rglob("*.npy"))  # nothing converted to the cache
    test = header["test"]
    assert test.n_trials == 0 and test.description["header_only"]
    # the header gives exactly the axes the reader gives
    train = read_recording(root, 1, "train", images, cache_dir=cache_dir)
    assert header["train"].description["source"] == train.description["source"]
    for rec, head in ((train, header["train"]), (train, test)):
        assert head.ch_names == rec.ch_names and head.sfreq == pytest.approx(rec.sfreq)
        np.testing.assert_allclose(head.times, rec.times)
    assert header["train"].concept_names == train.concept_names
    # ... and the test values were never read: reading them finds the NaN
    with pytest.raises(DataFormatError, match="NaN"):
        read_recording(root, 1, "test", images, test_set=test_set, cache_dir=cache_dir)


def test_large_torch_tensors_are_skipped_not_read(tmp_path, monkeypatch):
    import torch

    root, images = make_meg_atm_torch(tmp_path)
    loaded = []
    original = torch.load

    def spy(f, *args, **kwargs):
        loaded.append(len(f.getbuffer()) if hasattr(f, "getbuffer") else f)
        return original(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    rec = read_header(root, 1, "test", images)
    assert rec.data.shape == (0, 271, 201) and rec.tmax == pytest.approx(1.0)
    assert loaded and max(loaded) < 4096  # only the times tensor, not the 1.3 MB of data


# -- mismatches ----------------------------------------------------------------------------------
@pytest.fixture
def official(tmp_path):
    """An official release (17 ch, 100 Hz, -0.2..0.79 s) with its image set; returns
    (cfg, images, training file, test file)."""
    write_official(tmp_path / "eeg")
    images = read_image_set(write_image_set(tmp_path / "img"))
    sub = tmp_path / "eeg" / "sub-01"
    return (config(tmp_path / "eeg", images), images, sub / "preprocessed_eeg_training.npy",
            sub / "preprocessed_eeg_test.npy")


def _rewrite(path: Path, **changes) -> None:
    d = np.load(path, allow_pickle=True).item()
    d.update(changes)
    np.save(path, d)


def _refusal(cfg, images, train_file, test_file, error=DataFormatError) -> str:
    with pytest.raises(error) as exc:
        check_partitions(cfg, images)
    msg = str(exc.value)
    assert str(train_file) in msg and str(test_file) in msg, msg
    assert "\n" not in msg
    return msg


def test_matching_official_partitions_pass(official):
    cfg, images, _, _ = official
    check_partitions(cfg, images)


def test_another_sampling_rate_is_refused(tmp_path):
    write_nice_atm(tmp_path / "eeg")  # 250 Hz
    test_file = tmp_path / "eeg/sub-01/preprocessed_eeg_test.npy"
    with open(test_file, "rb") as fh:
        d = pickle.load(fh)
    d["preprocessed_eeg_data"] = d["preprocessed_eeg_data"][..., :100]
    d["times"] = np.round(np.arange(100) / 100.0, 3)  # 100 Hz, 0..0.99 s
    with open(test_file, "wb") as fh:
        pickle.dump(d, fh, protocol=4)
    images = read_image_set(write_image_set(tmp_path / "img"))
    msg = _refusal(config(tmp_path / "eeg", images), images,
                   tmp_path / "eeg/sub-01/preprocessed_eeg_training.npy", test_file)
    assert msg.startswith(f"test partition {test_file} does not match the training partition")
    assert msg.endswith("sampling rate 100 Hz vs 250 Hz (test vs training)")


def test_channels_in_another_order_are_refused(official):
    cfg, images, train_file, test_file = official
    _rewrite(test_file, ch_names=CH17[::-1])
    msg = _refusal(cfg, images, train_file, test_file)
    assert "same channels in a different order (first difference at position 0: 'P2' in the " \
           "test partition, 'Pz' in training)" in msg


def test_missing_and_extra_channels_are_named(official):
    cfg, images, train_file, test_file = official
    _rewrite(test_file, ch_names=CH17[:-1] + ["Cz"])
    msg = _refusal(cfg, images, train_file, test_file)
    assert "missing from the test partition: ['P2']" in msg and "only in the test partition: ['Cz']" in msg


def test_a_shifted_time_axis_is_refused(official):
    cfg, images, train_file, test_file = official
    _rewrite(test_file, times=np.round(np.arange(-19, 81) / 100.0, 3))  # one sample later
    msg = _refusal(cfg, images, train_file, test_file)
    assert "sample 0 is at -0.1900 s vs -0.2000 s" in msg
    # float rounding of the stored times is not a shift
    _rewrite(test_file, times=np.arange(-20, 80) / 100.0 + 1e-5)
    check_partitions(cfg, images)


def test_a_missing_test_file_names_where_it_should_be(official):
    cfg, images, train_file, test_file = official
    test_file.unlink()
    msg = _refusal(cfg, images, train_file, test_file, MissingFileError)
    assert msg.startswith(f"test partition of sub-01 not found (expected {test_file})")


def test_a_missing_test_image_is_refused(tmp_path, official):
    cfg, _, _, _ = official
    images = read_image_set(cfg.data.images)
    gone = images.test.paths[1]
    gone.unlink()
    with pytest.raises(MissingFileError, match=rf"1 of 3 test image\(s\) are missing, e\.g\. {gone}"):
        check_partitions(cfg, images)


def test_a_test_partition_of_another_image_count_is_refused(tmp_path):
    write_official(tmp_path / "eeg", n_test=4)
    images = read_image_set(write_image_set(tmp_path / "img", n_test=3))
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test\.npy: 4 test image conditions, "
                                              r"but the image set .* lists 3"):
        check_partitions(config(tmp_path / "eeg", images), images)


# -- the run's channel pick and crop decide what must match ---------------------------------------
def test_the_configured_channel_pick_is_compared(official):
    cfg, images, train_file, test_file = official
    _rewrite(test_file, ch_names=CH17[::-1])  # the same channels, stored in another order
    _refusal(cfg, images, train_file, test_file)
    picked = config(Path(cfg.data.eeg), images, channels=["Oz", "O1", "O2"])
    check_partitions(picked, images)  # both are read in the configured order
    _rewrite(test_file, ch_names=CH17[:-1] + ["Cz"])
    check_partitions(picked, images)  # a channel the run does not use may differ
    with pytest.raises(DataFormatError) as exc:
        check_partitions(config(Path(cfg.data.eeg), images, channels=["Oz", "P2"]), images)
    msg = str(exc.value)
    assert msg.startswith(f"test partition {test_file} (training partition {train_file})")
    assert "['P2'] not in this recording" in msg


def test_the_configured_crop_is_compared(official):
    cfg, images, train_file, test_file = official
    _rewrite(test_file, times=np.round(np.arange(0, 100) / 100.0, 3))  # 0..0.99 s, not -0.2..0.79
    assert "sample 0 is at 0.0000 s vs -0.2000 s" in _refusal(cfg, images, train_file, test_file)
    check_partitions(config(Path(cfg.data.eeg), images, tmin=0.0, tmax=0.5), images)
    with pytest.raises(DataFormatError, match=r"test partition .*not inside the epoch"):
        check_partitions(config(Path(cfg.data.eeg), images, tmin=-0.1, tmax=0.5), images)


def test_leave_one_subject_out_checks_every_test_subject(tmp_path):
    import synthetic

    eeg, image_root = synthetic.write_release(tmp_path, subjects=(1, 2), n_train_concepts=4,
                                              exemplars=2, n_test=3)
    images = read_image_set(image_root)
    cfg = config(eeg, images)
    cfg.protocol = "loso"
    cfg.data.subjects = [1, 2]
    check_partitions(cfg, images)
    test_file = eeg / "sub-02" / "preprocessed_eeg_test.npy"
    _rewrite(test_file, times=np.round(np.arange(-10, 90) / 100.0, 3))
    msg = _refusal(cfg, images, eeg / "sub-01" / "preprocessed_eeg_training.npy", test_file)
    assert "sub-02" in msg and "sample 0 is at -0.1000 s vs -0.2000 s" in msg
    test_file.unlink()
    msg = _refusal(cfg, images, eeg / "sub-02" / "preprocessed_eeg_training.npy", test_file,
                   MissingFileError)
    assert "test partition of sub-02 not found" in msg


def test_check_matching_partitions_works_on_loaded_recordings(official):
    cfg, images, train_file, test_file = official
    _rewrite(test_file, ch_names=CH17[::-1])
    train = read_recording(cfg.data.eeg, 1, "train", images)
    test = read_recording(cfg.data.eeg, 1, "test", images)
    with pytest.raises(DataFormatError, match="same channels in a different order"):
        check_matching_partitions(train, test)
    check_matching_partitions(train, read_header(cfg.data.eeg, 1, "train"))


# -- train_run refuses before writing anything ------------------------------------------------------
def test_train_run_refuses_a_mismatched_test_partition_before_writing(official, tmp_path,
                                                                      monkeypatch):
    import mindsight.train.run as run_module

    cfg, _, train_file, test_file = official
    _rewrite(test_file, ch_names=CH17[::-1])
    cfg.model.encoder, cfg.train.epochs = "ridge", 1

    def training_began(*args, **kwargs):
        raise AssertionError("training began: the test partition was not checked first")

    monkeypatch.setattr(run_module, "image_features", training_began, raising=False)
    out = tmp_path / "run"
    with pytest.raises(DataFormatError, match="same channels in a different order"):
        run_module.train_run(cfg, out)
    assert not (out / "config.yaml").exists() and not (out / "folds").exists()
