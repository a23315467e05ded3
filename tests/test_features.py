import numpy as np
import pytest
from layouts import write_image_set

from mindsight.embed import FeatureTable, image_features, text_features
from mindsight.embed import features as features_mod
from mindsight.embed.base import ImageEmbedder
from mindsight.errors import DataFormatError
from mindsight.io import read_image_set


class MeanColour(ImageEmbedder):
    """A transparent embedder: the mean RGB of the image (counts its calls)."""

    name, dim = "mean-colour", 3

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def transform(self, image):
        import torch

        return torch.tensor(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)

    def encode_batch(self, pixels):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        return pixels.mean(dim=(2, 3))


@pytest.fixture
def images(tmp_path):
    from mindsight._torch_compat import ensure_torchvision

    ensure_torchvision()
    return read_image_set(write_image_set(tmp_path / "img", n_train_concepts=3, exemplars=10))


def test_extract_then_hit_the_cache(images, cache_dir):
    emb = MeanColour()
    table = image_features(images.train, "mean-colour", embedder=emb, batch_size=8)
    assert table.features.shape == (30, 3) and table.keys == images.train.files
    expected = np.stack([np.asarray(open_img(p), np.float32).mean((0, 1)) / 255 for p in images.train.paths])
    np.testing.assert_allclose(table.features, expected, rtol=1e-5)
    calls = emb.calls
    again = image_features(images.train, "mean-colour", embedder=emb)
    assert emb.calls == calls, "second call must come from the cache"
    np.testing.assert_array_equal(again.features, table.features)
    # the test partition is a different image list: a different cache entry
    test = image_features(images.test, "mean-colour", embedder=emb)
    assert test.fingerprint != table.fingerprint and len(test) == 3
    assert len(list((cache_dir / "features" / "mean-colour").glob("*.safetensors"))) == 2


def open_img(p):
    from PIL import Image

    return Image.open(p).convert("RGB")


def test_interrupted_extraction_resumes(images, monkeypatch):
    monkeypatch.setattr(features_mod, "CHECKPOINT_SECONDS", 0.0)
    with pytest.raises(KeyboardInterrupt):
        image_features(images.train, "mean-colour", embedder=MeanColour(fail_after=2), batch_size=4)
    resumed = MeanColour()
    table = image_features(images.train, "mean-colour", embedder=resumed, batch_size=4)
    assert resumed.calls == 6, "8 batches in all, 2 done before the interruption"
    fresh = MeanColour()
    ref = features_mod._extract_resumable(fresh, images.train.paths, features_mod.cache_path("x", "image", "y"),
                                          "y", 4, "ref")
    np.testing.assert_allclose(table.features, ref, rtol=1e-6)
    assert not list(features_mod.cache_path("mean-colour", "image", table.fingerprint).parent.glob("*.partial*"))


def test_cache_for_another_list_is_never_reused(images, cache_dir):
    table = image_features(images.train, "mean-colour", embedder=MeanColour())
    path = features_mod.cache_path("mean-colour", "image", table.fingerprint)
    forged = FeatureTable(table.features[:29], table.keys[:29], "mean-colour", "image", table.fingerprint)
    forged.save(path)
    with pytest.raises(DataFormatError, match="different list of 29 items"):
        image_features(images.train, "mean-colour", embedder=MeanColour())
    path.write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="not a mindsight feature table"):
        image_features(images.train, "mean-colour", embedder=MeanColour())


def test_text_features_keyed_by_names_and_template(cache_dir):
    a = text_features(["dog", "pizza"])
    assert a.features.shape == (2, 384) and a.keys == ("dog", "pizza")
    assert a.meta["template"] == "This picture is {}"
    b = text_features(["dog", "pizza"], template="{}")
    assert b.fingerprint != a.fingerprint and not np.allclose(a.features, b.features)
    np.testing.assert_allclose(np.linalg.norm(a.normalized(), axis=1), 1.0, rtol=1e-6)


def test_table_shape_check():
    with pytest.raises(DataFormatError, match=r"shape \(3, 2\) for 2 keys"):
        FeatureTable(np.zeros((3, 2)), ("a", "b"), "m", "image", "f")
