"""EEG-ImageNet: the released .pth file(s) read through the dataset registry, its two test sets,
the ImageNet image folder, the cache, `mindsight info`, and bad files refused in one line.

The files here are written with plain ``torch.save`` of the documented structure (not with
mindsight's writer), so the reader is tested against the format."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from layouts import _save_image

from mindsight.errors import DataFormatError, LeakageError, MissingFileError
from mindsight.io import dataset_for, read_header, read_images, read_recording
from mindsight.io import eeg_imagenet as ei
from mindsight.io.eeg_imagenet import CH_NAMES_62, EEGImageNet, zero_shot_test_classes
from mindsight.io.layouts import describe

N_T = 50  # samples per trial (the release has 500; any length is read)


def wnids(n_per_granularity: int = 10) -> list[str]:
    return [f"n{10000 + i:08d}" for i in range(2 * n_per_granularity)]


def release(subjects=(0, 1), n_per_granularity: int = 10, n_images: int = 5, seed: int = 0) -> dict:
    """The documented structure: per subject every class's images in a block, in an order of
    the subject's own; EEG in µV (tens)."""
    rng = np.random.default_rng(seed)
    labels = wnids(n_per_granularity)
    trials = []
    for s in subjects:
        for c, w in enumerate(labels):
            for k in rng.permutation(n_images):
                trials.append({"eeg_data": torch.from_numpy(rng.normal(0, 20, (62, N_T)).astype(np.float32)),
                               "label": w, "granularity": "coarse" if c < n_per_granularity else "fine",
                               "subject": s, "image": f"{w}_{k + 1}.JPEG"})
    return {"dataset": trials, "labels": labels,
            "images": sorted({t["image"] for t in trials})}


def write_release(path: Path, content: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(release() if content is None else content, path)
    return path


def write_imagenet(root: Path, content: dict, flat: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for name in sorted({t["image"] for t in content["dataset"]}):
        _save_image(root / (name if flat else f"{name.split('_')[0]}/{name}"), rng, 8)
    return root


@pytest.fixture
def data(tmp_path):
    content = release()
    pth = write_release(tmp_path / "EEG-ImageNet" / "EEG-ImageNet.pth", content)
    images = write_imagenet(tmp_path / "imagenet", content)
    return pth, images, content


def test_the_release_file_or_its_folder_reads_through_the_registry(data):
    pth, images, content = data
    assert isinstance(dataset_for(pth), EEGImageNet) and isinstance(dataset_for(pth.parent), EEGImageNet)
    assert EEGImageNet().subjects(pth) == [1, 2]  # the file's subject 0 is subject 1
    imgs = read_images(pth, images)
    rec = read_recording(pth, 2, "train", imgs)
    assert rec.ch_names == tuple(CH_NAMES_62) and len(CH_NAMES_62) == 62 and rec.sfreq == 1000.0
    np.testing.assert_allclose(rec.times, np.arange(N_T) / 1000.0)  # from image onset
    assert rec.description["dataset"] == "EEG-ImageNet" and rec.description["unit"] == "µV"
    assert rec.description["test_set"] == "zero-shot"  # 'small', the default, is the zero-shot split
    # every trial is the file's, in µV, with its image and class
    mine = [t for t in content["dataset"] if t["subject"] == 1 and t["label"] not in
            zero_shot_test_classes(content["labels"], ["coarse"] * 10 + ["fine"] * 10)]
    assert rec.n_trials == len(mine) == 16 * 5
    part = imgs["train"]
    for i in (0, 7, len(mine) - 1):
        np.testing.assert_array_equal(rec.data[i], mine[i]["eeg_data"].numpy())
        assert part.files[rec.trials.image[i]] == f"{mine[i]['label']}/{mine[i]['image']}"
        assert part.concept_folders[rec.trials.concept[i]] == mine[i]["label"]
    assert (rec.trials.repetition == 0).all() and (rec.trials.subject == 2).all()
    assert rec.concept_names == part.concept_names  # wnids: no synset table here
    head = read_header(pth.parent, 2, "test", imgs)
    assert head.n_trials == 0 and head.ch_names == rec.ch_names and head.times.shape == (N_T,)


def test_zero_shot_holds_out_every_fifth_class_of_each_granularity(data):
    pth, images, content = data
    labels = content["labels"]
    held = zero_shot_test_classes(labels, ["coarse"] * 10 + ["fine"] * 10)
    assert held == [labels[4], labels[9], labels[14], labels[19]]
    imgs = read_images(pth, images)
    assert imgs.overlapping_concepts() == [] and imgs.note is None
    assert sorted(imgs["test"].concept_folders) == held and len(imgs["test"]) == 4 * 5
    train = read_recording(pth, 1, "train", imgs)
    test = read_recording(pth, 1, "test", imgs)
    seen = {train.concept_names[c] for c in train.trials.concept}
    assert seen.isdisjoint(test.concept_names[c] for c in test.trials.concept)
    from mindsight.recording import check_disjoint_concepts

    check_disjoint_concepts(train, test)


def test_per_image_is_the_authors_split_and_is_refused_for_zero_shot_training(data):
    pth, images, content = data
    imgs = read_images(pth, images, test_set="per-image", subject=2)
    order = [t["image"] for t in content["dataset"] if t["subject"] == 1]  # subject 2's trial order
    for w in content["labels"]:
        mine = [n for n in order if n.startswith(w)]
        train = {Path(f).name for f in imgs["train"].files if f.startswith(w)}
        assert train == set(mine[:3])  # the first 60 % (the authors' 30 of 50) train
    rec = read_recording(pth, 2, "test", imgs, test_set="per-image")
    assert rec.n_trials == 20 * 2 and rec.description["test_set"] == "per-image"
    with pytest.raises(DataFormatError, match="does not list this train partition"):
        read_recording(pth, 1, "train", imgs, test_set="per-image")  # built for subject 2's order
    assert "use test_set 'zero-shot'" in imgs.note and len(imgs.overlapping_concepts()) == 20
    from mindsight.train.run import check_images

    with pytest.raises(LeakageError, match="in both the training and the test images") as err:
        check_images(imgs)
    assert "\n" not in str(err.value)
    with pytest.raises(DataFormatError, match="'large' is not one of EEG-ImageNet's test sets"):
        read_recording(pth, 1, "test", test_set="large")


def test_the_second_read_comes_from_the_cache(data, monkeypatch):
    pth, images, _ = data
    first = read_recording(pth, 1, "test")
    monkeypatch.setattr(ei, "read_torch", lambda path: pytest.fail("the .pth was read again"))
    again = read_recording(pth, 1, "test")
    assert isinstance(again.data, np.memmap) and again.data.dtype == np.float32
    np.testing.assert_array_equal(again.data, first.data)
    np.testing.assert_array_equal(again.trials.image, first.trials.image)
    assert describe(pth)[0].subjects == [1, 2]  # the index is cached too


def test_halves_are_concatenated_and_must_not_share_subjects(tmp_path):
    write_release(tmp_path / "rel" / "EEG-ImageNet_1.pth", release(subjects=(0,)))
    write_release(tmp_path / "rel" / "EEG-ImageNet_2.pth", release(subjects=(1,), seed=1))
    assert EEGImageNet().subjects(tmp_path / "rel") == [1, 2]
    assert read_recording(tmp_path / "rel", 2, "test").n_trials == 20
    assert EEGImageNet().subjects(tmp_path / "rel" / "EEG-ImageNet_2.pth") == [2]  # one half alone
    write_release(tmp_path / "dup" / "EEG-ImageNet_1.pth", release(subjects=(0,)))
    write_release(tmp_path / "dup" / "EEG-ImageNet_2.pth", release(subjects=(0,)))
    with pytest.raises(DataFormatError, match="subject 1 .* is in both"):
        read_recording(tmp_path / "dup", 1, "train")
    write_release(tmp_path / "rel" / "EEG-ImageNet.pth")
    with pytest.raises(DataFormatError, match="both EEG-ImageNet.pth and its halves"):
        read_recording(tmp_path / "rel", 1, "train")
    with pytest.raises(MissingFileError, match="no trials of subject 9 .* subjects found: 1, 2"):
        read_recording(tmp_path / "rel" / "EEG-ImageNet.pth", 9, "train")


def test_images_nested_or_flat_with_readable_names_and_missing_ones_named(tmp_path):
    content = release(subjects=(0,))
    pth = write_release(tmp_path / "EEG-ImageNet.pth", content)
    flat = write_imagenet(tmp_path / "flat", content, flat=True)
    imgs = read_images(pth, flat)
    assert imgs["train"].files[0] == content["images"][0] and imgs.root == flat
    nested = write_imagenet(tmp_path / "ILSVRC" / "Data" / "train", content)
    (tmp_path / "ILSVRC" / "LOC_synset_mapping.txt").write_text(  # two folders above, as Kaggle's
        f"{content['labels'][0]} tench, Tinca tinca\n{content['labels'][4]} great_white_shark\n")
    imgs = read_images(pth, nested)
    assert imgs["train"].concept_names[0] == "tench" and imgs["test"].concept_names[0] == "great white shark"
    assert imgs["train"].concept_names[1] == content["labels"][1]  # no name: the wnid
    assert read_recording(pth, 1, "test", imgs).concept_names[0] == "great white shark"
    os.remove(nested / content["labels"][4] / f"{content['labels'][4]}_2.JPEG")
    with pytest.raises(MissingFileError, match=r"1 of the 20 EEG-ImageNet test images are missing, "
                                               r"e\.g\. .*_2\.JPEG.*ILSVRC training layout"):
        read_images(pth, nested)
    with pytest.raises(MissingFileError, match="not found .*IMAGENET_DIR/<wnid>/<wnid>_<n>.JPEG"):
        read_images(pth, tmp_path / "ILSVRC")  # holds train/ only deeper than one level
    with pytest.raises(MissingFileError, match="no image folder given"):
        read_images(pth, None)


class Payload:
    """Something a data file must never make mindsight build."""

    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("breakage, message", [
    (lambda c: {"trials": c["dataset"]}, r"no 'dataset' key \(found 'trials'\)"),
    (lambda c: {**c, "dataset": []}, "'dataset' should be a non-empty list"),
    (lambda c: {**c, "dataset": [{**c["dataset"][0], "eeg_data": torch.zeros(61, N_T)}]},
     r"dataset\[0\]\['eeg_data'\] is \(61, 50\); EEG-ImageNet trials are \(62 channels"),
    (lambda c: {**c, "dataset": [c["dataset"][0], {**c["dataset"][1], "eeg_data": torch.zeros(62, 9)}]},
     r"dataset\[1\]\['eeg_data'\] has shape \(62, 9\) but dataset\[0\] \(62, 50\)"),
    (lambda c: {**c, "dataset": [{k: v for k, v in c["dataset"][0].items() if k != "label"}]},
     r"dataset\[0\] has no 'label'"),
    (lambda c: {**c, "dataset": [{**c["dataset"][0], "granularity": "medium"}]}, "expected one of"),
    (lambda c: {**c, "evil": Payload()}, "refusing to unpickle posix.getcwd"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, breakage, message):
    pth = write_release(tmp_path / "EEG-ImageNet.pth", breakage(release(subjects=(0,), n_per_granularity=5)))
    with pytest.raises(DataFormatError, match=message) as err:
        read_recording(pth, 1, "train")
    assert "\n" not in str(err.value)


def test_a_raw_pickle_goes_through_the_restricted_unpickler(tmp_path):
    content = release(subjects=(0,), n_per_granularity=5)
    with open(tmp_path / "EEG-ImageNet.pth", "wb") as fh:
        pickle.dump(content, fh, protocol=4)
    assert read_recording(tmp_path / "EEG-ImageNet.pth", 1, "test").n_trials == 2 * 5
    with open(tmp_path / "EEG-ImageNet.pth", "wb") as fh:
        pickle.dump({**content, "evil": Payload()}, fh, protocol=4)
    with pytest.raises(DataFormatError, match="refusing to unpickle posix.getcwd: only arrays, tensors"):
        read_recording(tmp_path / "EEG-ImageNet.pth", 1, "test")


def test_info_shows_subjects_trials_shape_rate_and_classes(data):
    from typer.testing import CliRunner

    from mindsight.cli import app

    pth, _, _ = data
    (finding,) = describe(pth)
    assert finding.layout == "eeg-imagenet" and finding.subjects == [1, 2]
    assert "200 trials of 2 subjects, 20 classes (10 coarse, 10 fine)" in finding.description
    train = finding.rows[0]
    assert train["partition"] == "train (zero-shot)" and train["shape"] == [80, 62, N_T]
    assert train["sfreq"] == 1000.0 and train["concepts"] == 16 and train["images"] == 80
    result = CliRunner().invoke(app, ["info", str(pth)])
    assert result.exit_code == 0, result.output
    assert "eeg-imagenet" in result.output and "sub-01, sub-02" in result.output


# -- the simulator's EEG-ImageNet layout, end to end ------------------------------------------------
@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The simulator's smallest EEG-ImageNet release (40 classes × 5 images, one subject), at a
    low noise level: a decoder learns zero-shot retrieval from 160 single trials."""
    from mindsight.simulate import preset, simulate

    root = tmp_path_factory.mktemp("sim-eeg-imagenet")
    cache = tmp_path_factory.mktemp("sim-eeg-imagenet-cache")
    cfg = preset("eeg-imagenet-tiny", front_end=False, noise=0.3, observer_draws=0)
    meta = simulate(root, cfg, cache_dir=cache)
    return root, meta, cache


def test_the_simulator_writes_a_release_the_registry_reads(simulated):
    root, meta, _ = simulated
    pth, images = root / "EEG-ImageNet" / "EEG-ImageNet.pth", root / "imagenet"
    raw = torch.load(pth, weights_only=True)  # the documented structure, nothing else
    first = raw["dataset"][0]
    assert set(first) == {"eeg_data", "label", "granularity", "subject", "image"} and first["subject"] == 0
    assert tuple(first["eeg_data"].shape) == (62, 500) and len(raw["dataset"]) == 40 * 5
    assert raw["labels"] == [f"n{i:08d}" for i in range(1, 41)]
    assert [t["granularity"] for t in raw["dataset"]].count("coarse") == 100  # half the classes
    assert {t["image"] for t in raw["dataset"]} == {f"n{i:08d}_{k}.JPEG" for i in range(1, 41) for k in range(1, 6)}
    assert isinstance(dataset_for(pth), EEGImageNet)
    imgs = read_images(pth, images)
    assert imgs.overlapping_concepts() == [] and len(imgs["test"]) == meta["n_way"] == 8 * 5
    train, test = read_recording(pth, 1, "train", imgs), read_recording(pth, 1, "test", imgs)
    assert train.n_trials == 32 * 5 and test.n_trials == 40 and train.ch_names == tuple(CH_NAMES_62)
    assert set(train.concept_names).isdisjoint(test.concept_names)
    assert 0.1 < np.std(train.data) < 100  # µV, the simulator's unit (its raw release: volts = µV × 1e-6)
    assert meta["eeg-imagenet"]["classes"] == 40 and meta["ceiling_top1"] > 0.5
    (finding,) = [f for f in describe(root) if f.layout == "eeg-imagenet"]
    assert finding.subjects == [1]


def test_training_on_the_simulated_release_beats_chance(simulated, tmp_path):
    """train_run + evaluate_run with data.eeg = the .pth file and data.images = the ImageNet
    folder: NICE, 3 epochs on single trials, retrieves unseen classes' images above chance."""
    from mindsight.config import RunConfig
    from mindsight.evaluate import evaluate_run
    from mindsight.train import train_run

    root, meta, cache = simulated
    cfg = RunConfig()
    cfg.data.eeg, cfg.data.images = str(root / "EEG-ImageNet" / "EEG-ImageNet.pth"), str(root / "imagenet")
    cfg.data.subjects, cfg.data.val_fraction, cfg.data.train_trials = [1], 0.2, "single"
    cfg.model.encoder = "nice"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr = 3, 16, 3e-3
    cfg.train.text_weight, cfg.train.patience, cfg.train.device = 0.0, None, "cpu"
    out = train_run(cfg, tmp_path / "run", cache_dir=cache)
    m = evaluate_run(out, device="cpu", cache_dir=cache)
    assert m["n_way"] == 40 and m["chance_top1"] == pytest.approx(0.025)
    assert m["protocol"]["dataset"] == "EEG-ImageNet"
    assert m["top1"] > 3 * m["chance_top1"], m["top1"]


def test_the_command_line_runs_unchanged_on_the_simulated_release(simulated, tmp_path):
    """`info`, `cache`, `train --eeg FILE --images DIR --subject 1`, `evaluate` and every
    registered analysis run on the EEG-ImageNet file with no dataset-specific option."""
    from typer.testing import CliRunner

    from mindsight.analysis import ANALYSES
    from mindsight.cli import app

    root, _, cache = simulated
    pth, images, out = root / "EEG-ImageNet" / "EEG-ImageNet.pth", root / "imagenet", tmp_path / "run"
    runner = CliRunner()

    def ok(*args: object) -> str:
        result = runner.invoke(app, ["--quiet", *map(str, args)], env={"MINDSIGHT_CACHE_DIR": str(cache)})
        assert result.exit_code == 0, result.output
        return result.output

    assert "eeg-imagenet" in ok("info", pth)
    assert "EEG-ImageNet eeg-imagenet sub-01 test" in ok("cache", pth, "--images", images, "--subject", 1)
    ok("train", "--eeg", pth, "--images", images, "--subject", 1, "--encoder", "nice", "--epochs", 2,
       "--trials", "single", "--set", "train.text_weight=0", "--set", "data.val_fraction=0.2",
       "--device", "cpu", "--out", out)
    ok("evaluate", out, "--device", "cpu", "--draws", 5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["dataset"] == "EEG-ImageNet" and metrics["n_way"] == 40
    options = {"temporal": ["--permutations", 5], "spatial": ["--permutations", 5], "repetitions": ["--draws", 2]}
    for name in ANALYSES.names():
        ok("analyze", name, out, "--device", "cpu", *options.get(name, []))
        assert (out / "analysis" / f"{name}.json").is_file()
