"""THINGS-MEG readers: the official derivative (MNE epochs + sample attributes CSV) and ATM's
pickles, the image sets in recording order, dispatch by read_recording, and bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from layouts import _save_image, write_official

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io import (
    find_things_meg,
    read_images,
    read_recording,
    read_things_meg,
    things_meg_image_set,
    write_things_meg_atm,
    write_things_meg_official,
)
from mindsight.sensors import ctf_271

# 8 THINGS concepts (things_category_nr 1..8); two of them are test concepts
CONCEPTS = ["aardvark", "abacus", "accordion", "acorn", "air_conditioner", "airplane", "coat_rack",
            "tuxedo"]
TEST_CATS = (3, 7)  # accordion, coat_rack
EXEMPLARS, REPS = 3, 3
CH = [f"{n}-4408" for n in ctf_271()[:20]]  # names as in the real file (system suffix)
SFREQ, TMIN, N_T = 200.0, -0.1, 30


def image_nr(cat: int, exemplar: int) -> int:
    """THINGS numbering: concept-major; exemplar 4 of each concept is its test image."""
    return (cat - 1) * 4 + exemplar


def attributes(seed: int = 0) -> pd.DataFrame:
    """Every exp image once (exemplar e in session e), each test image once per session, and
    two catch trials; shuffled within sessions like the real runs."""
    rows = []
    for cat, name in enumerate(CONCEPTS, 1):
        for e in range(1, EXEMPLARS + 1):
            rows.append(dict(trial_type="exp", things_category_nr=cat, things_exemplar_nr=e,
                             things_image_nr=image_nr(cat, e), test_image_nr=np.nan,
                             image_path=f"images_meg/{name}/{name}_{e:02d}{'b' if e == 1 else 's'}.jpg",
                             session_nr=e))
    for t, cat in enumerate(TEST_CATS, 1):
        name = CONCEPTS[cat - 1]
        for s in range(1, REPS + 1):
            rows.append(dict(trial_type="test", things_category_nr=cat, things_exemplar_nr=4,
                             things_image_nr=image_nr(cat, 4), test_image_nr=t,
                             image_path=f"images_test_meg/{name}_04s.jpg", session_nr=s))
    for k, s in enumerate((1, 3), 1):
        rows.append(dict(trial_type="catch", things_category_nr=np.nan, things_exemplar_nr=np.nan,
                         things_image_nr=np.nan, test_image_nr=np.nan,
                         image_path=f"images_catch_meg/catch{k:03d}.jpg", session_nr=s))
    df = pd.DataFrame(rows)
    rng = np.random.default_rng(seed)
    df["shuffle"] = rng.random(len(df))
    df = df.sort_values(["session_nr", "shuffle"]).drop(columns="shuffle").reset_index(drop=True)
    df.insert(1, "image_nr", np.arange(1, len(df) + 1))
    df["run_nr"] = 1
    return df


def trial_data(n: int, n_ch: int = len(CH), n_t: int = N_T) -> np.ndarray:
    """Trial k holds k + channel/1000 + noise: rows can be traced back to their epoch."""
    rng = np.random.default_rng(1)
    base = np.arange(n)[:, None, None] + np.arange(n_ch)[None, :, None] / 1000
    return base + rng.normal(scale=1e-4, size=(n, n_ch, n_t))


def write_official_meg(root: Path, subject: int = 1, **kw) -> pd.DataFrame:
    df = attributes(subject)
    write_things_meg_official(root, subject, trial_data(len(df)), CH, SFREQ, TMIN, df, **kw)
    return df


def write_meg_images(root: Path, df: pd.DataFrame) -> Path:
    rng = np.random.default_rng(0)
    for path in df["image_path"].unique():
        _save_image(root / path, rng, 16)
    return root


# -- official ----------------------------------------------------------------------------------
def test_official_train_partition(tmp_path):
    df = write_official_meg(tmp_path / "bids", subject=2)
    rec = read_things_meg(tmp_path / "bids", 2, "train")
    assert rec.description["dataset"] == "THINGS-MEG" and rec.description["layout"] == "official"
    n_train = (len(CONCEPTS) - len(TEST_CATS)) * EXEMPLARS
    assert rec.data.shape == (n_train, len(CH), N_T) and rec.data.dtype == np.float32
    assert rec.ch_names == tuple(CH) and rec.sfreq == pytest.approx(SFREQ)
    assert rec.tmin == pytest.approx(TMIN) and rec.n_times == N_T
    # test concepts are removed; concepts sorted by things_category_nr, names from the folders
    assert rec.concept_names == ("aardvark", "abacus", "acorn", "air conditioner", "airplane", "tuxedo")
    # each exp image once; image i = i-th training image by things_image_nr
    assert sorted(rec.trials.image) == list(range(n_train))
    assert set(rec.trials.repetition) == {0}
    train_cats = [c for c in range(1, 9) if c not in TEST_CATS]
    nrs = sorted(image_nr(c, e) for c in train_cats for e in range(1, EXEMPLARS + 1))
    for k in range(rec.n_trials):
        row = int(round(float(rec.data[k, 0, 0])))  # the epoch (= CSV row) this trial came from
        assert df.trial_type[row] == "exp" and df.things_category_nr[row] not in TEST_CATS
        assert nrs[rec.trials.image[k]] == df.things_image_nr[row]
        assert rec.concept_names[rec.trials.concept[k]] == CONCEPTS[int(df.things_category_nr[row]) - 1].replace("_", " ")
        assert rec.trials.session[k] == df.session_nr[row] - 1
    np.testing.assert_array_equal(rec.trials.concept, rec.trials.image // EXEMPLARS)
    # a second read memory-maps the cache
    again = read_things_meg(tmp_path / "bids", 2, "train")
    assert isinstance(again.data, np.memmap)
    np.testing.assert_array_equal(again.data, rec.data)


def test_official_small_and_large_test_sets(tmp_path):
    df = write_official_meg(tmp_path)
    small = read_things_meg(tmp_path, 1, "test")
    assert small.n_trials == len(TEST_CATS) * REPS and small.n_images == 2
    assert small.concept_names == ("accordion", "coat rack")
    assert sorted(np.bincount(small.trials.image)) == [REPS, REPS]
    for img in range(2):
        assert sorted(small.trials.repetition[small.trials.image == img]) == list(range(REPS))
    rows = np.rint(small.data[:, 0, 0]).astype(int)
    assert set(df.trial_type[rows]) == {"test"}  # catch trials dropped
    np.testing.assert_array_equal(small.trials.concept, small.trials.image)
    avg = small.average_repetitions()
    assert avg.n_trials == 2 and set(avg.trials.n_averaged) == {REPS}

    large = read_things_meg(tmp_path, 1, "test", test_set="large")
    assert large.n_trials == len(TEST_CATS) * EXEMPLARS and large.n_images == 6
    assert large.concept_names == ("accordion", "coat rack") and large.description["test_set"] == "large"
    rows = np.rint(large.data[:, 0, 0]).astype(int)
    assert set(df.trial_type[rows]) == {"exp"} and set(df.things_category_nr[rows]) == set(TEST_CATS)
    np.testing.assert_array_equal(large.trials.concept, large.trials.image // EXEMPLARS)
    in_memory = read_things_meg(tmp_path, 1, "test", test_set="large", use_cache=False)
    assert not isinstance(in_memory.data, np.memmap)
    np.testing.assert_array_equal(in_memory.data, large.data)


def test_image_set_lists_images_in_recording_order(tmp_path):
    df = write_official_meg(tmp_path / "bids")
    images_root = write_meg_images(tmp_path / "images", df)
    for test_set in ("small", "large"):
        images = things_meg_image_set(tmp_path / "bids", 1, images_root, test_set)
        assert images.root == images_root and images.overlapping_concepts() == []
        for part in ("train", "test"):
            rec = read_things_meg(tmp_path / "bids", 1, part, images, test_set=test_set)
            p = images[part]
            assert len(p) == rec.n_images and p.concept_names == rec.concept_names
            rows = np.rint(rec.data[:, 0, 0]).astype(int)
            for k, row in enumerate(rows):  # the image a trial indexes is the image it showed
                assert p.files[rec.trials.image[k]] == df.image_path[row]
                assert p.concept[rec.trials.image[k]] == rec.trials.concept[k]
            assert all(path.is_file() for path in p.paths)
    small = things_meg_image_set(tmp_path / "bids", None, images_root)
    assert small.test.files == ("images_test_meg/accordion_04s.jpg", "images_test_meg/coat_rack_04s.jpg")
    assert small.test.concept_folders == ("accordion", "coat_rack")
    # read_images builds the same set from the CSV
    via = read_images(tmp_path / "bids", images_root, test_set="large")
    assert len(via.test) == 6 and via.train.files == small.train.files


def test_image_set_from_the_things_object_images_folder(tmp_path):
    df = write_official_meg(tmp_path / "bids")
    rng = np.random.default_rng(0)
    for path in df.image_path[df.trial_type != "catch"].unique():  # object_images/<concept>/<file>
        name = Path(path).name
        concept = Path(path).parent.name if path.startswith("images_meg/") else name.rsplit("_", 1)[0]
        _save_image(tmp_path / "object_images" / concept / name, rng, 16)
    images = things_meg_image_set(tmp_path / "bids", 1, tmp_path / "object_images")
    assert images.test.files[1] == "coat_rack/coat_rack_04s.jpg"
    assert all(p.is_file() for p in images.train.paths)


def test_image_set_of_another_test_set_is_refused(tmp_path):
    df = write_official_meg(tmp_path / "bids")
    small = things_meg_image_set(tmp_path / "bids", 1, write_meg_images(tmp_path / "images", df))
    with pytest.raises(DataFormatError, match="6 test images, but the image set .* lists 2"):
        read_things_meg(tmp_path / "bids", 1, "test", small, test_set="large")


def test_missing_image_file_is_named(tmp_path):
    df = write_official_meg(tmp_path / "bids")
    root = write_meg_images(tmp_path / "images", df)
    (root / "images_meg/acorn/acorn_02s.jpg").unlink()
    with pytest.raises(MissingFileError, match="acorn_02s.jpg"):
        things_meg_image_set(tmp_path / "bids", 1, root)


def test_epochs_without_catch_trials_join_the_non_catch_rows(tmp_path):
    write_official_meg(tmp_path, include_catch_in_epochs=False)
    rec = read_things_meg(tmp_path, 1, "test")
    assert rec.n_trials == len(TEST_CATS) * REPS


def test_derivative_folder_finds_the_bids_sourcedata(tmp_path):
    write_official_meg(tmp_path)
    found = find_things_meg(tmp_path / "derivatives" / "preprocessed")
    assert found[0].attributes == (tmp_path / "sourcedata" / "sample_attributes_P1.csv",)
    rec = read_things_meg(tmp_path / "derivatives" / "preprocessed", 1, "train")
    assert rec.description["attributes"].endswith("sample_attributes_P1.csv")


def test_metadata_in_the_epochs_file_replaces_a_missing_csv(tmp_path):
    write_official_meg(tmp_path)
    (tmp_path / "sourcedata" / "sample_attributes_P1.csv").unlink()
    rec = read_things_meg(tmp_path, 1, "test")
    assert rec.n_trials == 6 and "(metadata)" in rec.description["attributes"]


def test_full_size_channels_and_times(tmp_path):
    df = attributes()
    df = df[df.trial_type != "exp"].reset_index(drop=True)  # few trials: test + catch ...
    exp = attributes()[lambda d: (d.trial_type == "exp") & (d.things_exemplar_nr == 1)]
    df = pd.concat([df, exp], ignore_index=True)  # ... + one exemplar of each concept
    names = list(ctf_271())
    data = np.random.default_rng(0).normal(size=(len(df), 271, 281)) * 1e-12
    write_things_meg_official(tmp_path, 4, data, names, 200.0, -0.1, df)
    rec = read_things_meg(tmp_path, 4, "train")
    assert rec.data.shape == (6, 271, 281)
    assert rec.tmin == pytest.approx(-0.1) and rec.tmax == pytest.approx(1.3)
    exp_rows = np.flatnonzero((df.trial_type == "exp") & ~df.things_category_nr.isin(TEST_CATS))
    np.testing.assert_allclose(rec.data, data[exp_rows].astype(np.float32), rtol=1e-6)


def test_split_epochs_file_is_read_with_its_parts(tmp_path):
    import mne

    from mindsight.sensors import make_info

    df = attributes()
    data = np.random.default_rng(0).normal(size=(len(df), 271, 281)) * 1e-12
    events = np.c_[np.arange(len(df)) * 300, np.zeros(len(df), int),
                   df.things_image_nr.fillna(999999).astype(int)]
    epochs = mne.EpochsArray(data, make_info(list(ctf_271()), 200.0), events=events, tmin=-0.1,
                             metadata=df, verbose="error")
    path = tmp_path / "derivatives" / "preprocessed" / "preprocessed_P1-epo.fif"
    path.parent.mkdir(parents=True)
    epochs.save(path, split_size="3MB", verbose="error")  # the real files are split at 2 GB
    found = find_things_meg(tmp_path)
    assert len(found) == 1 and len(found[0].parts) > 2  # -epo-1.fif ... are parts, not subjects
    rec = read_things_meg(tmp_path, 1, "test")  # no CSV: the stored metadata is the table
    rows = np.flatnonzero(df.trial_type == "test")
    np.testing.assert_allclose(rec.data, data[rows].astype(np.float32), rtol=1e-6)


# -- bad input ---------------------------------------------------------------------------------
def test_csv_with_another_row_count_is_refused(tmp_path):
    df = write_official_meg(tmp_path)
    df.iloc[:-3].to_csv(tmp_path / "sourcedata" / "sample_attributes_P1.csv", index=False)
    with pytest.raises(DataFormatError) as exc:
        read_things_meg(tmp_path, 1, "train")
    msg = str(exc.value)
    assert "sample_attributes_P1.csv" in msg and "preprocessed_P1-epo.fif" in msg
    assert f"{len(df) - 3} table rows" in msg and f"{len(df)} epochs" in msg


def test_csv_with_a_wrong_image_number_is_refused(tmp_path):
    df = write_official_meg(tmp_path)
    row = int(np.flatnonzero(df.trial_type == "exp")[4])
    df.loc[row, "things_image_nr"] = 999
    df.to_csv(tmp_path / "sourcedata" / "sample_attributes_P1.csv", index=False)
    with pytest.raises(DataFormatError) as exc:
        read_things_meg(tmp_path, 1, "test")
    msg = str(exc.value)
    assert f"table row {row}" in msg and "999" in msg and "events[:, 2]" in msg
    assert "sample_attributes_P1.csv" in msg and "preprocessed_P1-epo.fif" in msg


def test_missing_csv_columns_are_named(tmp_path):
    df = write_official_meg(tmp_path)
    df.drop(columns="image_path").to_csv(tmp_path / "sourcedata" / "sample_attributes_P1.csv", index=False)
    with pytest.raises(DataFormatError, match="missing column.*image_path"):
        read_things_meg(tmp_path, 1, "train")


def test_unknown_channel_names_need_positions(tmp_path):
    import mne

    df = attributes()
    data = trial_data(len(df), n_ch=3)
    info = mne.create_info(["MEG001", "MEG002", "MEG003"], SFREQ, "mag")
    events = np.c_[np.arange(len(df)) * 40, np.zeros(len(df), int),
                   df.things_image_nr.fillna(999999).astype(int)]
    path = tmp_path / "derivatives" / "preprocessed" / "preprocessed_P1-epo.fif"
    path.parent.mkdir(parents=True)
    mne.EpochsArray(data, info, events=events, tmin=TMIN, verbose="error").save(path, verbose="error")
    (tmp_path / "sourcedata").mkdir()
    df.to_csv(tmp_path / "sourcedata" / "sample_attributes_P1.csv", index=False)
    with pytest.raises(DataFormatError, match="missing sensor positions.*MEG001"):
        read_things_meg(tmp_path, 1, "train")


def test_epochs_without_magnetometers_are_refused(tmp_path):
    import mne

    df = attributes()
    info = mne.create_info(["Oz", "Pz"], SFREQ, "eeg")
    events = np.c_[np.arange(len(df)) * 40, np.zeros(len(df), int),
                   df.things_image_nr.fillna(999999).astype(int)]
    path = tmp_path / "preprocessed_P1-epo.fif"
    mne.EpochsArray(trial_data(len(df), 2), info, events=events, verbose="error").save(path, verbose="error")
    df.to_csv(tmp_path / "sample_attributes_P1.csv", index=False)
    with pytest.raises(DataFormatError, match="no MEG magnetometer"):
        read_things_meg(tmp_path, 1, "train")


def test_unknown_subject_lists_the_subjects_found(tmp_path):
    write_official_meg(tmp_path, subject=3)
    with pytest.raises(MissingFileError, match="sub-03"):
        read_things_meg(tmp_path, 1, "train")


# -- ATM ---------------------------------------------------------------------------------------
def atm_arrays(n_c: int = 4, n_i: int = 3, n_test: int = 2, reps: int = 3, n_ch: int = len(CH), n_t: int = 21):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(n_c, n_i, 1, n_ch, n_t)).astype(np.float32)
    test = rng.normal(size=(n_test, 1, reps, n_ch, n_t)).astype(np.float32)
    return train, test, np.arange(n_t) / 200.0


def test_atm_layout(tmp_path):
    train, test, times = atm_arrays()
    write_things_meg_atm(tmp_path, 2, train, test, CH, times)
    rec = read_things_meg(tmp_path, 2, "train")
    assert rec.description["layout"] == "atm" and rec.data.shape == (12, len(CH), 21)
    assert rec.sfreq == pytest.approx(200.0) and rec.tmin == 0.0 and rec.tmax == pytest.approx(0.1)
    np.testing.assert_array_equal(rec.trials.image, np.arange(12))  # concept * n_images + exemplar
    np.testing.assert_array_equal(rec.trials.concept, np.arange(12) // 3)
    np.testing.assert_array_equal(rec.data[7], train[2, 1, 0])
    tst = read_things_meg(tmp_path, 2, "test")
    assert tst.n_trials == 6
    np.testing.assert_array_equal(tst.trials.image, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(tst.trials.repetition, [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(tst.data[4], test[1, 0, 1])
    with pytest.raises(DataFormatError, match="large.*only in the\\s+official"):
        read_things_meg(tmp_path, 2, "test", test_set="large")


def test_atm_times_follow_the_one_rule(tmp_path):
    train, test, _ = atm_arrays(n_t=21)
    sub = tmp_path / "sub-01"
    sub.mkdir()
    for start, ok in ((-20, True), (-5, False)):  # 41 times: the 21 samples are 0..0.1 s, or not
        times = np.arange(start, start + 41) / 200.0 if ok else np.arange(-40, 1) / 200.0
        for name, arr in (("preprocessed_meg_training.pkl", train), ("preprocessed_meg_zs_test.pkl", test)):
            with open(sub / name, "wb") as fh:
                pickle.dump({"meg_data": arr, "ch_names": CH, "times": times}, fh, protocol=4)
        if ok:
            rec = read_things_meg(tmp_path, 1, "train", use_cache=False)
            assert rec.tmin == 0.0 and rec.tmax == pytest.approx(0.1)
        else:
            with pytest.raises(DataFormatError, match=r"zs_test\.pkl: 'times' has 41 values .* 21 samples"):
                read_things_meg(tmp_path, 1, "test", use_cache=False)


def test_atm_pickle_of_torch_tensors(tmp_path):
    import torch

    train, test, times = atm_arrays()
    for name, arr in (("preprocessed_meg_training.pkl", train), ("preprocessed_meg_zs_test.pkl", test)):
        path = tmp_path / "sub-01" / name
        path.parent.mkdir(exist_ok=True)
        with open(path, "wb") as fh:
            pickle.dump({"meg_data": torch.from_numpy(arr), "ch_names": CH, "times": torch.from_numpy(times)},
                        fh, protocol=4)
    rec = read_things_meg(tmp_path, 1, "test")
    np.testing.assert_array_equal(rec.data[4], test[1, 0, 1])
    again = read_things_meg(tmp_path, 1, "test")
    assert isinstance(again.data, np.memmap)


def test_atm_with_image_set_checks_counts(tmp_path):
    train, test, times = atm_arrays()
    write_things_meg_atm(tmp_path / "meg", 1, train, test, CH, times)
    rng = np.random.default_rng(0)
    for c, name in enumerate(CONCEPTS[:4]):
        for e in range(3):
            _save_image(tmp_path / f"img/training_images/{c + 1:05d}_{name}/{name}_{e + 1:02d}.jpg", rng, 8)
    for c, name in enumerate(("tuxedo", "zebra")):
        _save_image(tmp_path / f"img/test_images/{c + 1:05d}_{name}/{name}_13s.jpg", rng, 8)
    images = read_images(tmp_path / "meg", tmp_path / "img")
    rec = read_recording(tmp_path / "meg", 1, "train", images)
    assert rec.concept_names == ("aardvark", "abacus", "accordion", "acorn")
    (tmp_path / "img/test_images/00002_zebra/zebra_13s.jpg").unlink()
    (tmp_path / "img/test_images/00002_zebra").rmdir()
    with pytest.raises(DataFormatError, match="2 test images .*lists 1 images"):
        read_recording(tmp_path / "meg", 1, "test", read_images(tmp_path / "meg", tmp_path / "img"))


# -- one entry point ---------------------------------------------------------------------------
def test_read_recording_dispatches(tmp_path):
    write_official_meg(tmp_path / "meg")
    write_official(tmp_path / "eeg", subject=1)
    meg = read_recording(tmp_path / "meg", 1, "test", test_set="large")
    assert meg.description["dataset"] == "THINGS-MEG" and meg.n_trials == 6
    eeg = read_recording(tmp_path / "eeg", 1, "train")
    assert eeg.description["layout"] == "official" and eeg.n_chans == 17
    with pytest.raises(DataFormatError, match="large.*THINGS-EEG2"):
        read_recording(tmp_path / "eeg", 1, "test", test_set="large")
    with pytest.raises(DataFormatError, match="large.*THINGS-EEG2"):
        read_images(tmp_path / "eeg", tmp_path / "img", test_set="large")
    with pytest.raises(DataFormatError, match="test_set must be"):
        read_recording(tmp_path / "meg", 1, "test", test_set="medium")
    with pytest.raises(DataFormatError, match="both THINGS-EEG2 .* and THINGS-MEG"):
        read_recording(tmp_path, 1, "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no preprocessed THINGS-EEG2 or THINGS-MEG"):
        read_recording(tmp_path / "empty", 1, "train")


def test_info_lists_both_meg_layouts(tmp_path):
    from typer.testing import CliRunner

    from mindsight.cli import app

    write_official_meg(tmp_path / "official")
    train, test, times = atm_arrays()
    write_things_meg_atm(tmp_path / "atm", 3, train, test, CH, times)
    result = CliRunner().invoke(app, ["info", str(tmp_path / "official"), str(tmp_path / "atm")])
    assert result.exit_code == 0, result.output
    for expected in ("things-meg-official", "things-meg-atm", "sub-01", "sub-03", "[18, 20, 30]",
                     "[6, 20, 30]", "test (large)", "[4, 3, 1, 20, 21]"):
        assert expected in result.output, expected
    js = json.loads(CliRunner().invoke(app, ["info", "--json", str(tmp_path / "official")]).output)
    rows = {r["partition"]: r for r in js[0]["rows"]}
    assert rows["train"]["images"] == 18 and rows["train"]["concepts"] == 6
    assert rows["test"]["images"] == 2 and rows["test (large)"]["images"] == 6


def test_train_and_evaluate_on_the_large_test_set(tmp_path, cache_dir):
    from test_cli import run

    df = write_official_meg(tmp_path / "bids")
    images = write_meg_images(tmp_path / "images", df)
    out = tmp_path / "run"
    result = run("train", "--meg", tmp_path / "bids", "--images", images, "--test-set", "large",
                 "--subject", 1, "--out", out, "--encoder", "nice", "--epochs", 2, "--no-progress",
                 "--cache-dir", cache_dir, "--set", "train.batch_size=4", "--set", "data.val_fraction=0.2",
                 "--set", "train.text_weight=0")
    assert result.exit_code == 0, result.output
    result = run("evaluate", out, "--cache-dir", cache_dir, "--no-progress", "--draws", 2)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_way"] == 6  # the 6 exp images of the 2 test concepts
