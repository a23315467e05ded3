"""NICE's centre evaluation: concept centres from THINGS images, the test image left out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import synthetic
import torch
from test_cli import run

import mindsight.embed.features as features_mod
from mindsight.config import RunConfig
from mindsight.embed import load_image_embedder
from mindsight.errors import DataFormatError, MissingFileError
from mindsight.evaluate import evaluate_run
from mindsight.evaluate.centres import (
    Centres,
    centre_features,
    centre_images,
    centre_metrics,
    things_folder,
)
from mindsight.io import read_image_set
from mindsight.train import train_run

MODEL = "efficientnet-lite0"


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """EEG of one subject driven by Lite0 embeddings of 24 + 6 images, and a THINGS-like folder
    with 3 extra images per test concept plus a copy of each test image."""
    eeg, images, cache = synthetic.cached_release(tmp_path_factory, n_train_concepts=8, exemplars=3,
                                                  n_test=6, noise=0.3)
    things = synthetic.write_things(images.parent / "things", images)
    return eeg, images, things, cache


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_test_folders_map_to_things_concept_folders():
    assert things_folder("00001_aircraft_carrier") == "aircraft_carrier"
    assert things_folder("aardvark") == "aardvark"


def test_a_centre_is_the_mean_of_unit_features_without_the_test_image(release, cache_dir):
    _, images, things, _ = release
    test = read_image_set(images).test
    listing, excluded = centre_images(things, test)
    assert len(listing) == 6 * 3 and listing.concept_folders[0] == "test000"
    assert sorted(excluded) == sorted(f"{f.split('/')[1].split('_', 1)[1]}/{f.split('/')[2]}"
                                      for f in test.files)
    assert not {f.rsplit("/", 1)[1] for f in listing.files} & {f.rsplit("/", 1)[1] for f in test.files}
    centres = centre_features(things, test, MODEL, cache_dir=cache_dir)
    embedder = load_image_embedder(MODEL)
    for c in (0, 4):
        folder = things / listing.concept_folders[c]
        kept = sorted(p for p in folder.iterdir() if p.name not in {f.rsplit("/", 1)[1] for f in test.files})
        assert len(kept) == 3
        want = _unit(embedder.embed_images(kept)).mean(0)
        np.testing.assert_allclose(centres.features[c], want, rtol=1e-4, atol=1e-5)
        with_test = _unit(embedder.embed_images(sorted(folder.iterdir()))).mean(0)
        assert np.abs(centres.features[c] - with_test).max() > 1e-3  # the exclusion matters
    norms = np.linalg.norm(centres.features, axis=1)
    assert (norms < 1 - 1e-3).all()  # NICE's centres are means of unit vectors, not re-normalised
    again = centre_features(things, test, MODEL, cache_dir=cache_dir,
                            renormalise=True)
    np.testing.assert_allclose(np.linalg.norm(again.features, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(_unit(centres.features), again.features, rtol=1e-4, atol=1e-6)


def test_centre_features_are_cached(release, cache_dir, monkeypatch):
    _, images, things, _ = release
    test = read_image_set(images).test
    first = centre_features(things, test, MODEL, cache_dir=cache_dir)

    def forbidden(*a, **k):
        raise AssertionError("cached centre features must not load the image model")

    monkeypatch.setattr(features_mod, "load_image_embedder", forbidden)
    second = centre_features(things, test, MODEL, cache_dir=cache_dir)
    np.testing.assert_array_equal(first.features, second.features)


def test_centres_are_ranked_by_dot_product_with_the_unit_eeg_embedding():
    # cosine would pick centre 0 (same direction); NICE's dot product picks the longer centre 1
    centres = Centres(features=np.array([[0.5, 0.0], [0.8, 0.6]], np.float32),
                      concept_folders=("a", "b"), image_concept=np.array([0, 1]), n_images=4,
                      excluded=(), source="x")
    emb = torch.tensor([[10.0, 1.0], [0.0, 1.0]])
    m = centre_metrics(emb, torch.tensor([0, 1]), centres)
    assert m["top1"] == 0.5 and m["top3"] == 1.0 and m["n_way"] == 2 and m["n_images"] == 4


def test_missing_concept_folder_and_a_concept_with_only_the_test_image(release, tmp_path):
    _, images, things, _ = release
    test = read_image_set(images).test
    broken = tmp_path / "things"
    shutil.copytree(things, broken)
    shutil.rmtree(broken / "test003")
    with pytest.raises(MissingFileError, match=r"test003: no THINGS folder for test concept 'test003'"):
        centre_images(broken, test)
    with pytest.raises(MissingFileError, match="THINGS image folder not found"):
        centre_images(tmp_path / "nowhere", test)
    shutil.copytree(things / "test003", broken / "test003")
    for p in (broken / "test002").glob("*b.jpg"):
        p.unlink()
    with pytest.raises(DataFormatError, match=r"test002: no THINGS image of test concept 'test002' "
                                              r"besides the test image\(s\) test002_01s.jpg"):
        centre_images(broken, test)


def test_the_things_download_folder_is_found_above_images(release, tmp_path):
    _, images, things, _ = release
    shutil.copytree(things, tmp_path / "THINGS" / "Images")
    listing, _ = centre_images(tmp_path / "THINGS", read_image_set(images).test)
    assert listing.root == tmp_path / "THINGS" / "Images" and len(listing) == 18


def test_evaluate_with_centres_writes_the_block_per_fold_and_in_the_summary(release, tmp_path):
    eeg, images, things, cache = release
    cfg = RunConfig.from_dict({"data": {"eeg": str(eeg), "images": str(images), "val_fraction": 0.25},
                               "model": {"encoder": "ridge"}})
    out = train_run(cfg, tmp_path / "run", cache_dir=cache)
    m = evaluate_run(out, cache_dir=cache, device="cpu", centres=things,
                     single_trial=False)
    c = m["centres"]
    assert c["n_way"] == 6 and c["n_images"] == 18 and c["n_excluded"] == 6
    assert c["source"] == str(things) and c["renormalised"] is False
    assert 0 <= c["top1"] <= c["top3"] <= c["top5"] <= 1
    assert m["per_subject"]["1"]["centres"]["top1"] == c["top1"]
    assert m["ci95"]["centres_top1"]["n"] == 1
    assert json.loads((out / "metrics.json").read_text())["centres"] == c
    result = run("evaluate", out, "--cache-dir", cache, "--no-progress", "--device", "cpu",
                 "--centres", things)
    assert result.exit_code == 0, result.output
    assert "NICE centres top-1 (%, 6 concepts)" in result.output
    without = evaluate_run(out, cache_dir=cache, device="cpu", single_trial=False)
    assert "centres" not in without
