import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from layouts import (
    CH17,
    CH63,
    write_image_set,
    write_nice_atm,
    write_official,
    write_package_layout,
)

from mindsight.errors import DataFormatError, LeakageError, MissingFileError
from mindsight.io import (
    find_preprocessed,
    read_image_set,
    read_things_eeg2,
    read_things_eeg2_subject,
)


def test_official_release(tmp_path):
    write_official(tmp_path, subject=2)
    rec = read_things_eeg2(tmp_path, 2, "train")
    assert rec.description["layout"] == "official"
    assert rec.data.shape == (30 * 4, 17, 100) and rec.data.dtype == np.float32
    assert rec.ch_names == tuple(CH17) and rec.sfreq == pytest.approx(100.0)
    assert rec.tmin == pytest.approx(-0.2) and rec.tmax == pytest.approx(0.79)
    src = np.load(tmp_path / "sub-02" / "preprocessed_eeg_training.npy", allow_pickle=True).item()
    np.testing.assert_allclose(rec.data, src["preprocessed_eeg_data"].reshape(120, 17, 100), rtol=1e-6)
    # documented order: condition i = concept i // 10, exemplar i % 10; repetitions innermost
    np.testing.assert_array_equal(rec.trials.image[:6], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(rec.trials.repetition[:6], [0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(np.unique(rec.trials.concept), [0, 1, 2])
    test = read_things_eeg2(tmp_path, 2, "test")
    assert test.data.shape == (3 * 5, 17, 100) and test.n_concepts == 3


def test_nice_atm_release_uses_the_tail_of_times(tmp_path):
    write_nice_atm(tmp_path)
    rec = read_things_eeg2(tmp_path / "sub-01", 1, "train")  # a subject folder works as root too
    assert rec.description["layout"] == "nice-atm"
    assert rec.n_chans == 63 and rec.n_times == 250 and rec.ch_names == tuple(CH63)
    assert rec.sfreq == pytest.approx(250.0)
    assert rec.tmin == pytest.approx(0.0) and rec.tmax == pytest.approx(0.996)


def test_package_layout(tmp_path):
    write_package_layout(tmp_path, subject=3, n_train=30)
    rec = read_things_eeg2(tmp_path, 3, "train")
    assert rec.description["layout"] == "things-eeg2-dataset"
    src = np.load(tmp_path / "processed/sub-03/preprocessed_eeg_training_sub-03.npy")
    conds = np.load(tmp_path / "processed/sub-03/img_conditions_training_sub-03.npy")
    assert rec.n_trials == src.shape[0] * src.shape[1] * src.shape[2]
    assert rec.n_times == 301 and rec.sfreq == pytest.approx(250.0) and rec.tmin == pytest.approx(-0.2)
    # every condition appears twice per session in two sessions: repetitions 0..3 per image
    counts = np.bincount(rec.trials.image)
    assert set(counts) == {4}
    for img in (0, 7):
        assert sorted(rec.trials.repetition[rec.trials.image == img]) == [0, 1, 2, 3]
    # trial k is session s, position c, repetition r of the source array
    k = 5
    s, c, r = np.unravel_index(k, src.shape[:3])
    assert rec.trials.image[k] == conds[s, c] - 1 and rec.trials.session[k] == s
    np.testing.assert_array_equal(rec.data[k], src[s, c, r])
    test = read_things_eeg2(tmp_path, 3, "test")
    assert set(np.bincount(test.trials.image)) == {12}  # 4 sessions × 3


def test_joined_with_image_set_gives_concept_names(tmp_path):
    write_official(tmp_path / "eeg", n_train=30, n_test=3)
    images = read_image_set(write_image_set(tmp_path / "img", n_train_concepts=3, exemplars=10, n_test=3))
    recs = read_things_eeg2_subject(tmp_path / "eeg", 1, images)
    assert recs["train"].concept_names == ("aardvark", "abacus", "accordion")
    assert recs["test"].concept_names == ("aircraft carrier", "antelope", "backscratcher")
    np.testing.assert_array_equal(recs["train"].trials.concept, recs["train"].trials.image // 10)


def test_image_count_mismatch(tmp_path):
    write_official(tmp_path / "eeg", n_train=40)
    write_image_set(tmp_path / "img", n_train_concepts=3)
    with pytest.raises(DataFormatError, match=r"40 training image conditions, but the image set .* lists 30"):
        read_things_eeg2(tmp_path / "eeg", 1, "train", tmp_path / "img")


def test_overlapping_concepts_refused(tmp_path):
    write_official(tmp_path / "eeg", n_train=30, n_test=3)
    root = write_image_set(tmp_path / "img", n_train_concepts=3, n_test=3)
    meta = np.load(root / "image_metadata.npy", allow_pickle=True).item()
    meta["test_img_concepts"][0] = "00001_aardvark"  # a training concept in the test set
    np.save(root / "image_metadata.npy", meta)
    (root / "test_images/00001_aardvark").mkdir()
    (root / "test_images/00001_aircraft_carrier/aircraft_carrier_06s.jpg").rename(
        root / "test_images/00001_aardvark/aircraft_carrier_06s.jpg")
    with pytest.raises(LeakageError, match="aardvark"):
        read_things_eeg2_subject(tmp_path / "eeg", 1, root)


def test_channel_names_differ_between_partitions(tmp_path):
    write_official(tmp_path)
    path = tmp_path / "sub-01" / "preprocessed_eeg_test.npy"
    d = np.load(path, allow_pickle=True).item()
    d["ch_names"] = d["ch_names"][:-1] + ["Cz"]
    np.save(path, d)
    with pytest.raises(DataFormatError, match=r"channel names differ.*only in train: \['P2'\]; only in test: \['Cz'\]"):
        read_things_eeg2_subject(tmp_path, 1)


def test_shape_and_key_errors(tmp_path):
    sub = tmp_path / "sub-01"
    sub.mkdir()
    np.save(sub / "preprocessed_eeg_training.npy", {"eeg": np.zeros((2, 2, 2, 2)), "ch_names": [], "times": []})
    with pytest.raises(DataFormatError, match=r"missing key\(s\) 'preprocessed_eeg_data'.*'eeg'"):
        read_things_eeg2(tmp_path, 1)
    np.save(sub / "preprocessed_eeg_training.npy", {
        "preprocessed_eeg_data": np.zeros((10, 2, 3, 5)), "ch_names": ["a", "b"], "times": np.arange(5) / 100})
    with pytest.raises(DataFormatError, match="'ch_names' has 2 names for 3 channels"):
        read_things_eeg2(tmp_path, 1)
    np.save(sub / "preprocessed_eeg_training.npy", {
        "preprocessed_eeg_data": np.zeros((10, 3, 5)), "ch_names": ["a", "b", "c"], "times": np.arange(5)})
    with pytest.raises(DataFormatError, match="expected 4 axes"):
        read_things_eeg2(tmp_path, 1)


def test_nan_in_eeg_names_the_file(tmp_path):
    write_nice_atm(tmp_path, n_train=10)
    path = tmp_path / "sub-01" / "preprocessed_eeg_training.npy"
    with open(path, "rb") as fh:
        d = pickle.load(fh)
    d["preprocessed_eeg_data"][3, 1, 5, 7] = np.inf
    with open(path, "wb") as fh:
        pickle.dump(d, fh, protocol=4)
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_training\.npy.*Inf.*\(3, 1, 5, 7\)"):
        read_things_eeg2(tmp_path, 1)


def test_missing_subject_and_unknown_layout(tmp_path):
    write_official(tmp_path, subject=1)
    with pytest.raises(MissingFileError, match="sub-05.*subjects found: sub-01"):
        read_things_eeg2(tmp_path, 5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no preprocessed THINGS-EEG2 files"):
        read_things_eeg2(tmp_path / "empty", 1)


def test_two_releases_under_one_root_is_ambiguous(tmp_path):
    write_official(tmp_path / "official")
    write_nice_atm(tmp_path / "nice", n_train=10)
    assert len(find_preprocessed(tmp_path, 1)) == 4
    with pytest.raises(DataFormatError, match="several training files"):
        read_things_eeg2(tmp_path, 1)


def test_package_layout_missing_meta(tmp_path):
    write_package_layout(tmp_path)
    (tmp_path / "processed/sub-01/meta_sub-01.json").unlink()
    with pytest.raises(MissingFileError, match="meta_sub-01.json"):
        read_things_eeg2(tmp_path, 1)
    write_package_layout(tmp_path)
    (tmp_path / "processed/sub-01/meta_sub-01.json").write_text(json.dumps({"ch_names": ["a"]}))
    with pytest.raises(DataFormatError, match="meta_sub-01.json"):
        read_things_eeg2(tmp_path, 1)


def test_second_load_uses_the_cache(tmp_path, cache_dir):
    write_nice_atm(tmp_path, n_train=10)
    first = read_things_eeg2(tmp_path, 1)
    assert isinstance(first.data, np.memmap)
    assert str(cache_dir) in str(first.data.filename)
    second = read_things_eeg2(tmp_path, 1)
    np.testing.assert_array_equal(first.data, second.data)
    assert len(list((cache_dir / "arrays").iterdir())) == 1


def test_a_times_axis_that_disagrees_with_the_data_is_refused(tmp_path):
    write_nice_atm(tmp_path, n_train=10, n_times=100)  # 300 times (from -0.2 s), 100 samples
    with pytest.raises(DataFormatError) as exc:
        read_things_eeg2(tmp_path, 1, "train")
    msg = str(exc.value)
    assert str(tmp_path / "sub-01" / "preprocessed_eeg_training.npy") in msg
    assert "'times' has 300 values" in msg and "the data have 100 samples" in msg


def test_info_lists_a_file_whose_times_disagree_with_a_note(tmp_path):
    from typer.testing import CliRunner

    from mindsight.cli import app

    write_nice_atm(tmp_path / "good", n_train=10)
    write_nice_atm(tmp_path / "bad", n_train=10, n_times=100)
    result = CliRunner().invoke(app, ["info", str(tmp_path / "good"), str(tmp_path / "bad")])
    assert result.exit_code == 0, result.output
    assert "note:" in result.output and "the data have 100 samples" in result.output
    js = json.loads(CliRunner().invoke(app, ["info", "--json", str(tmp_path)]).output)
    rows = {Path(r["file"]).parent.parent.name: r for f in js for r in f["rows"]
            if r["partition"] == "train"}
    assert rows["good"]["tmin"] == 0.0 and rows["good"]["tmax"] == pytest.approx(0.996)
    assert "note" not in rows["good"] and rows["good"]["sfreq"] == pytest.approx(250.0)
    assert rows["bad"]["shape"] == [10, 4, 63, 100] and "tmin" not in rows["bad"]
    assert "'times' has 300 values" in rows["bad"]["note"]
