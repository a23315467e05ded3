import numpy as np
import pytest
import torch
from layouts import write_image_set
from safetensors.numpy import save_file

from mindsight.embed import image_features, text_features
from mindsight.embed.anchors import import_features, recognise
from mindsight.errors import DataFormatError
from mindsight.io import read_image_set


@pytest.fixture
def images(tmp_path):
    return read_image_set(write_image_set(tmp_path / "img", n_train_concepts=3, exemplars=10, n_test=3))


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_atm_pt_files_feed_the_cache(tmp_path, images):
    rng = np.random.default_rng(0)
    img = _unit(rng.normal(size=(30, 1024))).astype(np.float32)
    txt = _unit(rng.normal(size=(3, 1024))).astype(np.float32)
    path = tmp_path / "ViT-H-14_features_train.pt"
    torch.save({"img_features": torch.from_numpy(img), "text_features": torch.from_numpy(txt)}, path)
    written = import_features(path, images)
    assert [t.modality for t, _ in written] == ["image", "text"]
    assert written[0][0].model == "clip-vit-h-14" and written[0][0].meta["normalized"] is True
    # training finds them by model name, with no embedder (and no hub) involved
    table = image_features(images.train, "clip-vit-h-14", embedder=_Forbidden())
    np.testing.assert_allclose(table.features, img)
    names = text_features(images.train.concept_names, "clip-vit-h-14", embedder=_Forbidden())
    np.testing.assert_allclose(names.features, txt)


class _Forbidden:
    def __getattr__(self, name):
        raise AssertionError("the embedder must not be used when features are cached")


def test_nice_npy(tmp_path, images):
    arr = np.random.default_rng(1).normal(size=(3, 1, 768)).astype(np.float32)
    path = tmp_path / "clip_feature_maps_test.npy"
    np.save(path, arr)
    [(table, _)] = import_features(path, images)
    assert table.model == "clip-vit-l-14" and table.features.shape == (3, 768)
    np.testing.assert_allclose(table.features, arr[:, 0])


def test_things_eeg2_dataset_safetensors(tmp_path, images):
    img = np.random.default_rng(2).normal(size=(30, 1024)).astype(np.float16)
    txt = np.random.default_rng(3).normal(size=(3, 1024)).astype(np.float16)
    path = tmp_path / "ViT-H-14_features_training.safetensors"
    save_file({"img_features": img, "text_features": txt}, str(path))
    image_table, text_table = (t for t, _ in import_features(path, images))
    assert image_table.model == "clip-vit-h-14" and image_table.features.dtype == np.float32
    assert text_table.meta["template"] == "{}"  # that package embeds the bare concept names
    again = text_features(images.train.concept_names, "clip-vit-h-14", template="{}", embedder=_Forbidden())
    np.testing.assert_allclose(again.features, txt.astype(np.float32))


def test_shape_mismatch_and_unknown_files(tmp_path, images):
    path = tmp_path / "ViT-H-14_features_test.pt"
    torch.save({"img_features": torch.zeros(5, 8)}, path)
    with pytest.raises(DataFormatError, match=r"shape \(5, 8\), but the image set .* has 3 test images"):
        import_features(path, images)
    torch.save({"features": torch.zeros(3, 8)}, path)
    with pytest.raises(DataFormatError, match="expected a dict with 'img_features'; found \\['features'\\]"):
        import_features(path, images)
    with pytest.raises(DataFormatError, match="not a recognised feature file"):
        import_features(tmp_path / "random.bin", images)
    assert recognise(tmp_path / "ViT-H-14_features_test_full.safetensors").source == "things-eeg2-dataset-full"
