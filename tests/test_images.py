import numpy as np
import pytest
from layouts import write_image_set

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.io.images import concept_name, read_image_set


def test_concept_names_from_folders():
    assert concept_name("00002_aircraft_carrier") == "aircraft carrier"
    assert concept_name("01654_zucchini") == "zucchini"
    assert concept_name("misc") == "misc"


def test_metadata_and_folders_agree(tmp_path):
    with_meta = read_image_set(write_image_set(tmp_path / "a"))
    without = read_image_set(write_image_set(tmp_path / "b", metadata=False))
    assert with_meta.source == "image_metadata.npy" and without.source == "folders"
    for part in ("train", "test"):
        assert with_meta[part].files == without[part].files
        np.testing.assert_array_equal(with_meta[part].concept, without[part].concept)
    train = with_meta.train
    assert len(train) == 30 and train.n_concepts == 3
    assert train.files[0] == "training_images/00001_aardvark/aardvark_01b.jpg"
    assert train.paths[0].is_file()
    np.testing.assert_array_equal(train.concept, np.arange(30) // 10)
    assert with_meta.overlapping_concepts() == []


def test_found_one_level_down(tmp_path):
    write_image_set(tmp_path / "Image_set")
    assert read_image_set(tmp_path).root == tmp_path / "Image_set"


def test_missing_image_and_bad_metadata(tmp_path):
    root = write_image_set(tmp_path)
    next(iter((root / "training_images").rglob("*.jpg"))).unlink()
    with pytest.raises(MissingFileError, match=r"1 image\(s\) listed in image_metadata.npy are missing"):
        read_image_set(root)
    meta = np.load(root / "image_metadata.npy", allow_pickle=True).item()
    meta["train_img_concepts"] = meta["train_img_concepts"][:5]
    np.save(root / "image_metadata.npy", meta)
    with pytest.raises(DataFormatError, match="'train_img_files' has 30 entries but 'train_img_concepts' has 5"):
        read_image_set(root, check_files=False)
    with pytest.raises(MissingFileError, match="no THINGS image set"):
        read_image_set(tmp_path / "training_images")


def test_fingerprint_tracks_the_image_list(tmp_path):
    a = read_image_set(write_image_set(tmp_path / "a")).train
    b = read_image_set(write_image_set(tmp_path / "b")).train
    assert a.fingerprint() == b.fingerprint()  # same relative files and sizes: same list
    c = read_image_set(write_image_set(tmp_path / "c", exemplars=9)).train
    assert c.fingerprint() != a.fingerprint()
