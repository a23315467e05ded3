"""The registry of dataset readers: dispatch, the Dataset contract, and what it says when a folder
holds no dataset or two."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from layouts import write_image_set, write_official

from mindsight.errors import ContractError, DataFormatError, MissingFileError
from mindsight.io import datasets
from mindsight.io.datasets import (
    DATASETS,
    Dataset,
    Finding,
    dataset_for,
    find_dataset,
    read_images,
    read_recording,
)
from mindsight.io.headers import read_header
from mindsight.io.things_eeg2 import ThingsEEG2
from mindsight.io.things_meg import ThingsMEG, write_things_meg_atm
from mindsight.recording import Recording, Trials
from mindsight.registry import Registry, from_table


class Toy(Dataset):
    """A dataset in one file per subject, ``toy-sub-N.npy`` (trials × 2 channels × 5 samples):
    what a new reader needs, and nothing else."""

    name = "Toy"
    description = "toy recordings"
    layouts = {"toy": "toy-sub-N.npy files (a test dataset)"}
    test_sets = ("zero-shot",)

    def find(self, root: Path, subject: int | None = None) -> list:
        files = [types.SimpleNamespace(path=p, subject=int(p.stem.split("-")[-1]))
                 for p in datasets.walk_files(Path(root)) if p.name.startswith("toy-sub-")]
        return [f for f in files if subject in (None, f.subject)]

    def read(self, root, subject, partition, images=None, *, test_set="small", cache_dir=None) -> Recording:
        self.resolve_test_set(test_set, root)
        data = np.load(self.find(root, subject)[0].path).astype(np.float32)
        n = len(data)
        return Recording(data=data, ch_names=("Oz", "Pz"), sfreq=100.0, times=np.arange(5) / 100.0,
                         trials=Trials.build(np.arange(n), np.arange(n), subject), partition=partition,
                         description={"dataset": self.name, "source": "toy"})

    def images(self, data_root, images_path, *, test_set="small", subject=None):
        return datasets.read_image_set(images_path)

    def describe(self, root: Path) -> list[Finding]:
        rows = [{"subject": f.subject, "file": str(f.path)} for f in self.find(root)]
        return [Finding("preprocessed", "toy", self.layouts["toy"], root, rows)] if rows else []


@pytest.fixture
def with_toy(monkeypatch):
    """The registry with one more line: ``"Toy": "toy_reader:Toy"``."""
    module = types.ModuleType("toy_reader")
    module.Toy = Toy
    monkeypatch.setitem(sys.modules, "toy_reader", module)
    table = Registry("dataset", base=Dataset, load=from_table({**datasets._READERS, "Toy": "toy_reader:Toy"}))
    monkeypatch.setattr(datasets, "DATASETS", table)
    return table


def write_toy(root: Path, subject: int = 1, n: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / f"toy-sub-{subject}.npy", np.random.default_rng(0).normal(size=(n, 2, 5)))
    return root


def test_the_registry_lists_the_readers_and_their_classes():
    assert {"THINGS-EEG2", "THINGS-MEG"} <= set(DATASETS.names())
    assert DATASETS.get("THINGS-EEG2") is ThingsEEG2 and DATASETS.get("THINGS-MEG") is ThingsMEG
    assert all(e.factory.name == e.name and e.factory.layouts for e in DATASETS)
    assert {"small", "large"} <= set(datasets.TEST_SETS)


def test_dispatch_goes_to_the_dataset_the_folder_holds(tmp_path):
    write_official(tmp_path / "eeg")
    train, test, times = (np.zeros((2, 3, 1, 2, 11), np.float32), np.zeros((2, 1, 3, 2, 11), np.float32),
                          np.arange(11) / 200.0)
    write_things_meg_atm(tmp_path / "meg", 1, train, test, ["MLO11", "MRO11"], times)
    assert isinstance(dataset_for(tmp_path / "eeg"), ThingsEEG2)
    assert isinstance(dataset_for(tmp_path / "meg", "small"), ThingsMEG)
    assert find_dataset(tmp_path / "eeg")[0] == "THINGS-EEG2"
    assert read_recording(tmp_path / "meg", 1, "test").description["dataset"] == "THINGS-MEG"
    rec = read_recording(tmp_path / "eeg", 1, "train")
    assert rec.description["dataset"] == "THINGS-EEG2" and rec.n_chans == 17
    head = read_header(tmp_path / "eeg", 1, "train")
    assert head.n_trials == 0 and head.ch_names == rec.ch_names
    # no dataset under data_root: the THINGS image folder as it is
    write_image_set(tmp_path / "img", n_train_concepts=2, exemplars=2, n_test=2, size=8)
    assert len(read_images(None, tmp_path / "img")["train"]) == 4
    assert len(read_images(tmp_path / "img", tmp_path / "img")["test"]) == 2


def test_a_new_dataset_is_one_class_and_one_registry_line(tmp_path, with_toy):
    write_toy(tmp_path / "toy", subject=3)
    assert isinstance(dataset_for(tmp_path / "toy"), Toy)
    assert Toy().subjects(tmp_path / "toy") == [3]
    rec = read_recording(tmp_path / "toy", 3, "train")
    assert rec.description["dataset"] == "Toy" and rec.data.shape == (4, 2, 5)
    # 'small', the configuration's default, is the dataset's own default test set
    assert Toy().resolve_test_set("small") == "zero-shot"
    assert "zero-shot" in datasets.TEST_SETS
    # the default header reads the partition and keeps its axes, no trials
    head = read_header(tmp_path / "toy", 3, "test")
    assert head.n_trials == 0 and head.ch_names == ("Oz", "Pz") and head.description["header_only"]
    with pytest.raises(DataFormatError, match="'large' is not one of Toy's test sets"):
        read_recording(tmp_path / "toy", 3, "test", test_set="large")
    from mindsight.io.layouts import describe

    assert [f.layout for f in describe(tmp_path / "toy")] == ["toy"]


def test_two_datasets_under_one_root_name_both(tmp_path, with_toy):
    write_official(tmp_path / "eeg")
    write_toy(tmp_path / "toy")
    with pytest.raises(DataFormatError, match=r"holds both THINGS-EEG2 files \(e\.g\. .*\) and Toy "
                                              r"files .*pass the folder"):
        find_dataset(tmp_path)
    with pytest.raises(DataFormatError, match="both THINGS-EEG2"):
        read_recording(tmp_path, 1, "train")


def test_an_empty_folder_lists_every_registered_layout(tmp_path, with_toy):
    (tmp_path / "empty").mkdir()
    assert find_dataset(tmp_path / "empty") == (None, [])
    with pytest.raises(MissingFileError) as err:
        dataset_for(tmp_path / "empty")
    message = str(err.value)
    assert "\n" not in message
    assert f"no preprocessed {' or '.join(entry.name for entry in with_toy)} data" in message
    for entry in with_toy:
        for layout in entry.factory.layouts.values():
            assert layout in message


def test_unknown_test_sets_are_refused_before_reading(tmp_path):
    write_official(tmp_path / "eeg")
    with pytest.raises(DataFormatError, match="test_set must be one of"):
        dataset_for(tmp_path / "eeg", "medium")
    with pytest.raises(DataFormatError, match="large.*THINGS-EEG2, which has one test set"):
        dataset_for(tmp_path / "eeg", "large")


def test_the_contract_is_checked_when_a_dataset_is_registered():
    registry = Registry("dataset", base=Dataset)

    class NoFind(Dataset):  # implements everything but find
        name, description, layouts = "no-find", "x", {"x": "x"}

        def read(self, *a, **k):
            raise NotImplementedError

        def images(self, *a, **k):
            raise NotImplementedError

        def describe(self, root):
            return []

    with pytest.raises(ContractError, match="does not implement find"):
        registry.register("no-find")(NoFind)

    class NoLayouts(Toy):
        layouts = None

    with pytest.raises(ContractError, match="does not declare layouts"):
        registry.register("no-layouts")(NoLayouts)
    with pytest.raises(ContractError, match="not a subclass of Dataset"):
        registry.register("plain")(object)
    registry.register("Toy")(Toy)
    assert registry.get("Toy") is Toy


def test_a_table_line_must_name_the_class_it_points_to():
    table = Registry("dataset", base=Dataset, load=from_table({"THINGS-MEG": "mindsight.io.things_eeg2:ThingsEEG2"}))
    with pytest.raises(ContractError, match="has name 'THINGS-EEG2'"):
        table.names()
