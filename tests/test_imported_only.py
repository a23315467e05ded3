"""Training and evaluating from imported image features alone (no CLIP weights on the machine)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import synthetic
import torch
from test_cli import run

import mindsight.embed.features as features_mod
from mindsight.config import RunConfig
from mindsight.embed import image_features, optional_text_features
from mindsight.embed.anchors import import_features
from mindsight.embed.backends import openclip
from mindsight.errors import UnknownNameError, WeightsUnavailableError
from mindsight.evaluate import evaluate_run
from mindsight.evaluate.report import summary_tables
from mindsight.io import read_image_set
from mindsight.train import train_run


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """One subject's EEG driven by Lite0 embeddings of 24 training + 6 test images."""
    return synthetic.cached_release(tmp_path_factory, n_train_concepts=8, exemplars=3, n_test=6,
                                    noise=0.3)


@pytest.fixture
def no_clip_weights(monkeypatch):
    """open_clip cannot load weights (a cluster without internet); every attempt is counted.
    Image embedders must not be loaded at all: the image features are imported."""
    attempts: list[str] = []

    def unavailable(self, name, *args, **kwargs):
        attempts.append(name)
        raise WeightsUnavailableError(f"could not load {name!r}: no network")

    def forbidden(*args, **kwargs):
        raise AssertionError("imported image features must not load an image model")

    monkeypatch.setattr(openclip.OpenClip, "__init__", unavailable)
    monkeypatch.setattr(features_mod, "load_image_embedder", forbidden)
    return attempts


def _projected(images, cache, dim, seed=0):
    """Stand-ins for CLIP features: a fixed random projection of the Lite0 features the EEG was
    made from (so retrieval has something to find), per partition."""
    w = np.random.default_rng(seed).normal(size=(1280, dim)).astype(np.float32)
    return {p: image_features(images[p], "efficientnet-lite0", cache_dir=cache).features @ w
            for p in ("train", "test")}


def _cfg(eeg, images, image_model, encoder="ridge", **train):
    return RunConfig.from_dict({
        "data": {"eeg": str(eeg), "images": str(images), "val_fraction": 0.25},
        "model": {"encoder": encoder, "image_model": image_model},
        "train": {"batch_size": 16, **train}})


def _notes(caplog, text):
    return [r for r in caplog.records if r.name == "mindsight" and text in r.getMessage()]


def test_nice_features_alone_train_and_evaluate_with_a_null_classification(
        release, cache_dir, no_clip_weights, caplog, tmp_path):
    eeg, images, release_cache = release
    imgset = read_image_set(images)
    feats = _projected(imgset, release_cache, 768)
    for part, name in (("train", "training"), ("test", "test")):
        path = tmp_path / f"clip_feature_maps_{name}.npy"
        np.save(path, feats[part][:, None, :])
        import_features(path, imgset, cache_dir=cache_dir)
    caplog.set_level(logging.INFO, logger="mindsight")

    out = train_run(_cfg(eeg, images, "clip-vit-l-14"), tmp_path / "run",
                    cache_dir=cache_dir)
    assert no_clip_weights == ["clip-vit-l-14"]  # one attempt, for the text tower only
    [note] = _notes(caplog, "training without the concept-name text term")
    assert note.getMessage().startswith("no clip-vit-l-14 text features (weights unavailable and none imported)")
    protocol = json.loads((out / "run.json").read_text())["protocol"]
    assert protocol["text_model"] is None and "clip-vit-l-14" in protocol["text_note"]
    spec = json.loads((out / "folds" / "sub-01_seed-0" / "fold.json").read_text())
    assert spec["complete"] is True

    caplog.clear()
    m = evaluate_run(out, cache_dir=cache_dir, device="cpu", single_trial=False)
    assert len(_notes(caplog, "zero-shot classification is null")) == 1
    assert m["n_way"] == 6 and 0 <= m["top1"] <= m["top5"] <= 1 and "k_way" in m
    assert m["classification"] is None and "clip-vit-l-14" in m["classification_reason"]
    assert m["per_subject"]["1"]["classification"] is None
    assert "classification_top1" not in m["ci95"]
    rows = [r for _, _, rows in summary_tables(m) for r in rows]
    assert any(r["metric"] == "classification" and r["value"].startswith("null (no clip-vit-l-14")
               for r in rows)
    result = run("evaluate", out, "--cache-dir", cache_dir, "--no-progress", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "null (no clip-vit-l-14 text features" in result.output


def test_text_weight_zero_evaluates_without_a_text_tower_either(release, cache_dir, no_clip_weights,
                                                                 tmp_path):
    eeg, images, release_cache = release
    imgset = read_image_set(images)
    feats = _projected(imgset, release_cache, 768)
    for part, name in (("train", "training"), ("test", "test")):
        np.save(tmp_path / f"clip_feature_maps_{name}.npy", feats[part][:, None, :])
        import_features(tmp_path / f"clip_feature_maps_{name}.npy", imgset, cache_dir=cache_dir)
    out = train_run(_cfg(eeg, images, "clip-vit-l-14", text_weight=0.0), tmp_path / "run", cache_dir=cache_dir)
    assert no_clip_weights == []  # no text term: the text tower is not even tried
    assert json.loads((out / "run.json").read_text())["protocol"]["text_note"] is None
    m = evaluate_run(out, cache_dir=cache_dir, device="cpu", single_trial=False)
    assert no_clip_weights == ["clip-vit-l-14"]  # evaluation tries CLIP's text tower once
    assert m["classification"] is None and m["top1"] >= 0


def test_atm_text_features_are_used_without_weights(release, cache_dir, no_clip_weights, caplog,
                                                     tmp_path):
    eeg, images, release_cache = release
    imgset = read_image_set(images)
    feats = _projected(imgset, release_cache, 1024, seed=1)
    rng = np.random.default_rng(2)
    for part in ("train", "test"):
        txt = rng.normal(size=(imgset[part].n_concepts, 1024)).astype(np.float32)
        path = tmp_path / f"ViT-H-14_features_{part}.pt"
        torch.save({"img_features": torch.from_numpy(feats[part]), "text_features": torch.from_numpy(txt)}, path)
        import_features(path, imgset, cache_dir=cache_dir)
    caplog.set_level(logging.INFO, logger="mindsight")
    out = train_run(_cfg(eeg, images, "clip-vit-h-14", encoder="nice", epochs=2), tmp_path / "run", cache_dir=cache_dir)
    m = evaluate_run(out, cache_dir=cache_dir, device="cpu", single_trial=False)
    assert no_clip_weights == [] and not _notes(caplog, "text features")
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["protocol"]["text_model"] == "clip-vit-h-14" and run_json["protocol"]["text_note"] is None
    fold = json.loads((out / "folds" / "sub-01_seed-0" / "fold.json").read_text())
    assert all("text" in epoch for epoch in fold["history"])  # the text term was in the loss
    assert m["classification"]["n_way"] == 6 and "classification_reason" not in m


def test_optional_text_features(cache_dir, monkeypatch, tmp_path):
    names = ("dog", "pizza")
    original = features_mod.load_text_embedder
    table, reason = optional_text_features(names, cache_dir=cache_dir)  # the offline default
    assert reason is None and table.model == "minilm" and table.features.shape == (2, 384)

    class Available:  # a text tower whose weights load
        dim = 8

        def embed_texts(self, texts, batch_size=None):
            return np.ones((len(texts), 8), np.float32)

    monkeypatch.setattr(features_mod, "load_text_embedder", lambda name, device="cpu": Available())
    table, reason = optional_text_features(names, "clip-vit-l-14", cache_dir=cache_dir)
    assert reason is None and table.features.shape == (2, 8)

    def unavailable(name, device="cpu"):
        raise WeightsUnavailableError(f"could not load {name!r}")

    monkeypatch.setattr(features_mod, "load_text_embedder", unavailable)
    table, reason = optional_text_features(names, "clip-vit-h-14", cache_dir=cache_dir)
    assert table is None and reason == "no clip-vit-h-14 text features (weights unavailable and none imported)"
    # things-eeg2-dataset imports store the bare names ('{}'): used when nothing else is had
    bare = features_mod.FeatureTable(np.eye(2, 4, dtype=np.float32), names, "clip-vit-h-14", "text",
                                     features_mod.text_fingerprint(names, "{}"))
    bare.save(features_mod.cache_path("clip-vit-h-14", "text", bare.fingerprint, cache_dir))
    table, reason = optional_text_features(names, "clip-vit-h-14", cache_dir=cache_dir)
    assert reason is None and np.array_equal(table.features, bare.features)
    monkeypatch.setattr(features_mod, "load_text_embedder", original)
    with pytest.raises(UnknownNameError):  # other errors still stop
        optional_text_features(names, "no-such-model", cache_dir=cache_dir)
