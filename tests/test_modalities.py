"""CognitionCapturer's modalities: the edge and depth views, view composition, text levels and
the modality registry (levels, caching per modality, skipping unavailable weights)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from layouts import write_image_set
from PIL import Image

from mindsight.embed import depth as depth_mod
from mindsight.embed import features as features_mod
from mindsight.embed.depth import (
    DEFAULT_DEPTH_MODEL,
    DepthView,
    colour_depth,
    depth_view_name,
    inferno_lut,
)
from mindsight.embed.edges import EdgeView
from mindsight.embed.features import image_features, level_tables, text_features
from mindsight.embed.modalities import (
    MODALITIES,
    Modality,
    eval_level,
    modality_levels,
    modality_names,
    modality_tables,
)
from mindsight.embed.views import ComposedView, canonical, expand_views, foveated_blur, get_view
from mindsight.errors import ContractError, UnknownNameError, WeightsUnavailableError
from mindsight.io import read_image_set
from mindsight.io.images import ImagePartition
from mindsight.registry import Registry

pytestmark = pytest.mark.usefixtures("one_thread")
LITE0 = "efficientnet-lite0"


@pytest.fixture
def images(tmp_path):
    from mindsight._torch_compat import ensure_torchvision

    ensure_torchvision()
    return read_image_set(write_image_set(tmp_path / "img", n_train_concepts=3, exemplars=2, n_test=2))


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory):
    """A random-weight Depth Anything model in the transformers format (what save_pretrained
    writes), loaded by the depth view like any downloaded one."""
    from mindsight._torch_compat import ensure_torchvision

    ensure_torchvision()
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56,
                            patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, reassemble_hidden_size=32)
    folder = tmp_path_factory.mktemp("tiny-depth-anything")
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(folder)
    yield str(folder)
    depth_mod.clear_pipelines()


def _noise(size: int = 224, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


# --- composition -------------------------------------------------------------------------------

def test_views_compose_left_to_right_under_canonical_names():
    view = get_view("edge+foveated-k45")
    assert isinstance(view, ComposedView) and view.name == view.spec == "edge+foveated-k45"
    im = _noise()
    want = foveated_blur(get_view("edge")(im), 45)
    assert np.array_equal(np.asarray(view(im)), np.asarray(want))
    assert not np.array_equal(np.asarray(view(im)), np.asarray(get_view("foveated-k45+edge")(im)))
    # each part canonical; identity parts drop out
    assert canonical("edge-s1+foveated-k51") == "edge+foveated"
    assert canonical("edge+sharp") == "edge" and canonical("sharp+gauss-k1") == "sharp"
    assert expand_views(["edge+ubp"]) == ["edge+foveated-k45", "edge+foveated", "edge+foveated-k57"]
    assert expand_views(["ubp", "sharp"]) == ["foveated-k45", "foveated", "foveated-k57", "sharp"]
    with pytest.raises(UnknownNameError, match=r"unknown image view 'edge\+fovea'.*compose with '\+'"):
        get_view("edge+fovea")
    with pytest.raises(UnknownNameError, match="names a stack"):
        get_view("edge+ubp")


def test_a_depth_model_path_may_hold_a_plus():
    view = get_view("depth=/models/a+b+foveated")
    assert [type(p) for p in view.parts] == [DepthView, type(get_view("foveated"))]
    assert view.parts[0].model == "/models/a+b"
    assert view.spec == "depth=/models/a+b+foveated" and get_view(view.spec).name == view.name
    assert view.name == f"{depth_view_name('/models/a+b')}+foveated"
    assert get_view("depth=/models/a+b").model == "/models/a+b"  # no view after the '+'
    assert expand_views(["depth=/models/a+b"]) == ["depth=/models/a+b"]
    assert expand_views(["depth=/models/a+b+ubp"])[1] == "depth=/models/a+b+foveated"


# --- edge ---------------------------------------------------------------------------------------

def _square(lo: int = 64, hi: int = 160) -> Image.Image:
    a = np.zeros((224, 224, 3), np.uint8)
    a[lo:hi, lo:hi] = 255
    return Image.fromarray(a)


def _border_band(lo: int, hi: int, slack: int) -> np.ndarray:
    """By hand: the pixels within ``slack`` of the square [lo, hi)'s border pixels."""
    band = np.zeros((224, 224), bool)
    band[lo - slack: hi + slack, lo - slack: hi + slack] = True
    band[lo + 1 + slack: hi - 1 - slack, lo + 1 + slack: hi - 1 - slack] = False
    return band


@pytest.mark.parametrize("name", ["edge", "edge-s2"])
def test_edges_of_a_white_square_lie_on_its_border(name):
    lo, hi = 64, 160
    out = np.asarray(get_view(name)(_square(lo, hi)))
    assert out.shape == (224, 224, 3) and set(np.unique(out)) == {0, 255}
    assert (out == out[:, :, :1]).all(), "white on black: the three channels agree"
    edges = out[:, :, 0] == 255
    band = _border_band(lo, hi, 1)
    assert not (edges & ~band).any(), "no edge away from the square's border (± 1 px)"
    # every position along each side, corners aside, has an edge pixel across the border
    inner = slice(lo + 3, hi - 3)
    for side in (edges[lo - 1: lo + 2, inner], edges[hi - 2: hi + 1, inner],
                 edges[inner, lo - 1: lo + 2].T, edges[inner, hi - 2: hi + 1].T):
        assert side.any(axis=0).all()
    assert not np.asarray(get_view(name)(Image.new("RGB", (90, 60), (200, 120, 30)))).any()


def test_edge_view_names():
    assert get_view("edge").sigma == 1.0 and isinstance(get_view("edge-s2.5"), EdgeView)
    assert canonical("edge-s2.0") == "edge-s2" and canonical("edge-s1") == "edge"
    small = np.asarray(get_view("edge")(_noise(50)))
    assert small.shape == (224, 224, 3), "edges are found on the picture at 224 px"


# --- depth --------------------------------------------------------------------------------------

def test_depth_colours_follow_the_depth_order():
    lut = inferno_lut()
    assert lut.shape == (256, 3) and lut[0].sum() < 30 and lut[255].sum() > 600  # black → pale yellow
    got = colour_depth(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_array_equal(got, lut[[[0, 85], [170, 255]]])
    np.testing.assert_array_equal(colour_depth(np.full((3, 3), 7.0)), np.broadcast_to(lut[0], (3, 3, 3)))


def test_depth_view_loads_a_local_model_folder(tiny_depth, images, cache_dir):
    view = get_view(f"depth={tiny_depth}")
    assert view.name == depth_view_name(tiny_depth) and view.name.startswith("depth-") and len(view.name) == 16
    assert view.spec == f"depth={tiny_depth}" and get_view("depth").name == "depth"
    assert get_view(f"depth={DEFAULT_DEPTH_MODEL}").spec == "depth"
    view.prepare("cpu")
    im = _noise(224)
    depth = view.depth(im)
    assert depth.shape == (224, 224) and depth.max() > depth.min()
    out = np.asarray(view(im))
    assert out.shape == (224, 224, 3)
    lut = inferno_lut()
    np.testing.assert_array_equal(out[np.unravel_index(depth.argmax(), depth.shape)], lut[255])
    np.testing.assert_array_equal(out[np.unravel_index(depth.argmin(), depth.shape)], lut[0])
    assert Image.fromarray(out).mode == "RGB" and view(_noise(40)).size == (224, 224)
    # features through the view are cached under its cache name, the spec kept in the table
    table = image_features(images.test, LITE0, view=f"depth={tiny_depth}")
    path = features_mod.cache_path(LITE0, "image", table.fingerprint, cache_dir, view.name)
    assert path.is_file() and path.parent.name == view.name
    assert table.meta["view"] == view.name and table.meta["view_spec"] == view.spec


def test_missing_depth_model_is_one_clear_line(monkeypatch):
    with pytest.raises(WeightsUnavailableError) as err:
        get_view("depth=/no/such/depth-model").prepare()
    msg = str(err.value)
    assert "\n" not in msg and "'/no/such/depth-model'" in msg
    assert "no such folder" in msg and "depth_model" in msg
    # a hub id that is not in the cache, offline (tests run with HF_HUB_OFFLINE=1)
    with pytest.raises(WeightsUnavailableError) as err:
        get_view("depth=mindsight-tests/no-such-depth-model").prepare()
    msg = str(err.value)
    assert "\n" not in msg and "'mindsight-tests/no-such-depth-model'" in msg
    assert "hf download mindsight-tests/no-such-depth-model" in msg


def test_default_depth_model_offline_is_one_clear_line():
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(DEFAULT_DEPTH_MODEL, "config.json"), str):
        pytest.skip(f"{DEFAULT_DEPTH_MODEL} is in this machine's Hugging Face cache")
    with pytest.raises(WeightsUnavailableError, match=rf"^depth view: cannot load the depth model '{DEFAULT_DEPTH_MODEL}'") as err:
        get_view("depth+foveated").prepare()
    assert "\n" not in str(err.value) and f"hf download {DEFAULT_DEPTH_MODEL}" in str(err.value)


# --- text levels --------------------------------------------------------------------------------

def test_text_level_rows_follow_image_order(tmp_path):
    concept = np.array([2, 0, 1, 0, 2, 2])
    part = ImagePartition("train", tmp_path, tuple(f"im{i}.jpg" for i in range(6)), concept,
                          ("00001_dog", "00002_ice_cream", "00003_tree"))
    (table,) = level_tables(part, ["minilm@text"])
    assert table.modality == "text" and table.model == "minilm" and table.keys == part.files
    concepts = text_features(part.concept_names, "minilm")
    np.testing.assert_array_equal(table.features, concepts.features[concept])
    from mindsight.embed.base import load_text_embedder

    want = load_text_embedder("minilm").embed_texts(["This picture is ice cream"])[0]
    np.testing.assert_allclose(table.features[2], want, rtol=1e-4, atol=1e-5)  # concept[2] == 1
    assert table.meta["template"] == "This picture is {}"


# --- modalities --------------------------------------------------------------------------------

def test_modality_levels_and_evaluation_level():
    assert modality_names() == ["image", "edge", "depth", "text"]
    plain = modality_levels(["image", "edge", "depth", "text"], "im", "tm", False)
    assert plain == {"image": ["im@sharp"], "edge": ["im@edge"], "depth": ["im@depth"], "text": ["tm@text"]}
    ubp = modality_levels(["image", "edge", "depth", "text"], "im", "tm", True, depth_model="/m/da")
    assert ubp["image"] == ["im@foveated-k45", "im@foveated", "im@foveated-k57"]
    assert ubp["edge"] == ["im@edge+foveated-k45", "im@edge+foveated", "im@edge+foveated-k57"]
    assert ubp["depth"] == ["im@depth=/m/da+foveated-k45", "im@depth=/m/da+foveated", "im@depth=/m/da+foveated-k57"]
    assert ubp["text"] == ["tm@text"]
    assert modality_levels(["depth"], "im", "tm", False, depth_model=DEFAULT_DEPTH_MODEL)["depth"] == ["im@depth"]
    for levels in ubp.values():  # every image level names a view that parses back to itself
        for level in levels:
            view = level.split("@", 1)[1]
            assert view == "text" or get_view(view).spec == view
    assert [eval_level(n, True) for n in ("image", "edge", "depth", "text")] == [1, 1, 1, 0]
    assert [eval_level(n, False) for n in ("image", "edge", "depth", "text")] == [0, 0, 0, 0]
    assert {e.name: e.factory.kind for e in MODALITIES} == {"image": "image", "edge": "image",
                                                            "depth": "image", "text": "text"}


def test_a_modality_breaking_its_contract_fails_at_registration():
    own: Registry[Modality] = Registry("modality", base=Modality)

    class Sound(Modality):
        kind: ClassVar[str] = "audio"
        description: ClassVar[str] = "what it sounds like"

        def levels(self, image_model, text_model, uncertainty):
            return []

    with pytest.raises(ContractError, match="kind 'audio' is not one of image, text"):
        own.register("sound")(Sound)

    class NoLevels(Modality):
        kind: ClassVar[str] = "image"
        description: ClassVar[str] = "nothing"

    with pytest.raises(ContractError, match="does not implement levels"):
        own.register("none")(NoLevels)


def _files(cache_dir, model, folder=None):
    root = cache_dir / "features" / model
    return sorted((root / folder if folder else root).glob("*.safetensors"))


def test_each_modality_is_cached_under_its_own_key_and_follows_the_images(tiny_depth, images, cache_dir,
                                                                           monkeypatch):
    part = images.train
    names = ["image", "edge", "depth", "text"]
    tables, notes = modality_tables(part, names, LITE0, "minilm", depth_model=tiny_depth)
    assert notes == {} and list(tables) == names
    depth_folder = depth_view_name(tiny_depth)
    files = {"image": _files(cache_dir, LITE0), "edge": _files(cache_dir, LITE0, "edge"),
             "depth": _files(cache_dir, LITE0, depth_folder), "text": _files(cache_dir, "minilm")}
    assert all(len(f) == 1 for f in files.values()) and len({f[0] for f in files.values()}) == 4
    for name in names:
        (t,) = tables[name]
        assert t.keys == part.files and t.modality == ("text" if name == "text" else "image")
    # the features are the image model's embeddings of each modality's pictures
    from mindsight.embed.base import load_image_embedder

    lite0 = load_image_embedder(LITE0)
    for name, view in (("image", "sharp"), ("edge", "edge"), ("depth", f"depth={tiny_depth}")):
        want = lite0.embed_images([get_view(view)(Image.open(p)) for p in part.paths])
        np.testing.assert_allclose(tables[name][0].features, want, rtol=1e-4, atol=1e-4)
    assert not np.allclose(tables["image"][0].features, tables["edge"][0].features)
    assert not np.allclose(tables["edge"][0].features, tables["depth"][0].features)

    # a second call is served from the cache: no model is loaded at all
    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as m:  # (not monkeypatch.undo(): it would undo the private cache too)
        m.setattr(features_mod, "load_image_embedder", refuse)
        m.setattr(features_mod, "load_text_embedder", refuse)
        m.setattr(depth_mod, "depth_pipeline", refuse)
        again, _ = modality_tables(part, names, LITE0, "minilm", depth_model=tiny_depth)
    for name in names:
        np.testing.assert_array_equal(again[name][0].features, tables[name][0].features)

    # a changed image (its file size changes) is a new image list: every image-kind modality recomputes
    changed = part.paths[3]
    Image.new("RGB", (32, 32), (250, 20, 20)).save(changed, quality=90)
    new, _ = modality_tables(part, names, LITE0, "minilm", depth_model=tiny_depth)
    for name, folder in (("image", None), ("edge", "edge"), ("depth", depth_folder)):
        assert len(_files(cache_dir, LITE0, folder)) == 2, name
        old_t, new_t = tables[name][0], new[name][0]
        assert new_t.fingerprint != old_t.fingerprint
        keep = [i for i in range(len(part)) if i != 3]
        np.testing.assert_allclose(new_t.features[keep], old_t.features[keep], rtol=1e-4, atol=1e-4)
        assert not np.allclose(new_t.features[3], old_t.features[3], rtol=1e-3, atol=1e-3), name
    # the text rows depend on the concept names only (the concept table is reused)
    assert len(_files(cache_dir, "minilm")) == 1
    np.testing.assert_array_equal(new["text"][0].features, tables["text"][0].features)


def test_unavailable_depth_weights_skip_the_modality_with_a_note(images, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="mindsight"):
        tables, notes = modality_tables(images.test, ["image", "depth", "text"], LITE0, "minilm",
                                        depth_model="/no/such/depth-model")
    assert list(tables) == ["image", "text"] and list(notes) == ["depth"]
    assert notes["depth"].startswith("modality 'depth' skipped: depth view: cannot load the depth model "
                                     "'/no/such/depth-model'")
    assert "\n" not in notes["depth"] and notes["depth"] in caplog.text
    assert not list((features_mod.cache_path(LITE0, "image", "x").parent).glob("depth*")), "nothing half-made"
    # any other error stops
    with pytest.raises(UnknownNameError, match="unknown modality 'sound'"):
        modality_tables(images.test, ["image", "sound"], LITE0, "minilm")
    with pytest.raises(UnknownNameError, match="does not embed text"):
        modality_tables(images.test, ["text"], LITE0, LITE0)
