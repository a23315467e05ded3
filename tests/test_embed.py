import time

import numpy as np
import pytest
from PIL import Image

from mindsight.embed import (
    image_embedder_names,
    load_embedder,
    load_image_embedder,
    load_text_embedder,
    text_embedder_names,
)
from mindsight.errors import UnknownNameError, WeightsUnavailableError

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_DINO = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "mlp_ratio": 2,
             "patch_size": 14, "image_size": 224}


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def lite0():
    return load_image_embedder("efficientnet-lite0")


def test_efficientnet_lite0_has_real_imagenet_weights(lite0):
    skimage_data = pytest.importorskip("skimage.data")
    cat, coffee = Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.coffee())
    logits = lite0.classify(lite0.load_batch([cat, coffee])).numpy()
    top = logits.argmax(axis=1)
    assert 281 <= top[0] <= 285, f"chelsea should be a cat (ImageNet 281-285), got class {top[0]}"
    assert top[1] in (967, 968, 504), f"coffee should be espresso/cup/coffee mug, got {top[1]}"


def test_efficientnet_embeddings(lite0, tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    cat = Image.fromarray(skimage_data.chelsea())
    path = tmp_path / "cat.png"
    cat.save(path)
    flipped = cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    rocket = Image.fromarray(skimage_data.rocket())
    emb = lite0.embed_images([path, flipped, rocket], batch_size=2)
    assert emb.shape == (3, 1280) and emb.dtype == np.float32
    assert _cos(emb[0], emb[1]) > _cos(emb[0], emb[2]) + 0.2, "a mirrored cat is closer than a rocket"
    np.testing.assert_allclose(lite0.embed_images([cat])[0], emb[0], rtol=1e-4, atol=1e-5)


def test_lite0_with_folded_batch_norm_matches_timm(lite0):
    """The embedder folds each batch norm into its convolution: no batch norm is left and the
    embedding is timm's unfolded model's up to float rounding."""
    import timm
    import torch
    from timm.layers import BatchNormAct2d

    from mindsight.embed.backends.efficientnet import load_lite0_weights

    reference = timm.create_model("efficientnet_lite0", pretrained=False)
    load_lite0_weights(reference)
    reference.eval()
    assert not any(isinstance(m, BatchNormAct2d) for m in lite0.model.modules())
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = reference.forward_head(reference.forward_features(x), pre_logits=True)
        got = lite0.encode_batch(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_minilm_is_real_and_semantic():
    m = load_text_embedder("minilm")
    e = m.embed_texts(["This picture is dog", "This picture is puppy", "This picture is pizza"])
    assert e.shape == (3, 384)
    assert _cos(e[0], e[1]) > _cos(e[0], e[2]) + 0.1


def test_registry_names_and_errors():
    assert {"efficientnet-lite0", "clip-vit-h-14", "clip-vit-l-14", "dinov2-vit-b-14"} <= set(image_embedder_names())
    assert {"minilm", "clip-vit-h-14"} <= set(text_embedder_names())
    with pytest.raises(UnknownNameError, match=r"unknown embedder 'clip-h'; available: .*clip-vit-h-14"):
        load_embedder("clip-h")
    with pytest.raises(UnknownNameError, match="does not embed images; image embedders: .*efficientnet-lite0"):
        load_image_embedder("minilm")
    with pytest.raises(UnknownNameError, match="does not embed text"):
        load_text_embedder("dinov2-vit-b-14")


@pytest.mark.parametrize("name", ["clip-vit-h-14", "clip-vit-l-14"])
def test_openclip_backend_from_small_config(name):
    m = load_embedder(name, config=TINY_CLIP)
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    emb = m.embed_images(imgs, batch_size=2)
    assert emb.shape == (3, 16) and np.isfinite(emb).all()
    assert not np.allclose(emb[0], emb[1])
    txt = m.embed_texts(["This picture is dog", "This picture is cat"])
    assert txt.shape == (2, 16) and not np.allclose(txt[0], txt[1])


def test_dinov2_backend_from_small_config():
    m = load_embedder("dinov2-vit-b-14", config=TINY_DINO)
    img = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    emb = m.embed_images([img, img.rotate(90)])
    assert emb.shape == (2, 32) and np.isfinite(emb).all() and not np.allclose(emb[0], emb[1])


@pytest.mark.parametrize("name", ["clip-vit-h-14", "clip-vit-l-14", "dinov2-vit-b-14"])
def test_hub_weights_offline_fail_fast_and_clearly(name):
    t0 = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match=rf"(?s)could not load '{name}'.*network access"):
        load_embedder(name)
    assert time.monotonic() - t0 < 60
