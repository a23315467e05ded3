"""EVNet's fixed front-end (``evnet``) and EVResNet-50 (``evnet-resnet50``), on CPU, offline.

The biology is checked by its defining properties: centre-surround cells ignore a uniform field,
Gabor cells prefer their own orientation. The ResNet-50 loader is checked on a random-weight
checkpoint written under the key names of EVNet's published ``evresnet-50.pth``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mindsight.embed import EMBEDDERS, image_embedder_names, load_embedder
from mindsight.embed.backends.evnet import (
    PPD,
    WEIGHTS_ENV,
    EVNetFrontEnd,
    EVNetResNet50,
    evnet_state_dict,
)
from mindsight.errors import DataFormatError, WeightsUnavailableError


@pytest.fixture(scope="module")
def frontend() -> EVNetFrontEnd:
    return EVNetFrontEnd().eval()


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    shapes = [(240, 320), (300, 260), (224, 224), (180, 400)]
    return [Image.fromarray((rng.random(shapes[i % 4] + (3,)) * 255).astype(np.uint8)) for i in range(n)]


def grating(theta_deg: float, cycles_per_degree: float = 2.0, size: int = 224) -> torch.Tensor:
    """Achromatic full-contrast sinusoid whose luminance varies along θ, measured as EVNet's Gabor
    θ: from the row (down) axis towards the columns."""
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    t = np.deg2rad(theta_deg)
    g = 0.5 + 0.5 * np.cos(2 * np.pi * cycles_per_degree / PPD * (r * np.cos(t) + c * np.sin(t)))
    return torch.tensor(g, dtype=torch.float32).expand(1, 3, size, size).clone()


def test_registered_as_image_embedders():
    assert {"evnet", "evnet-resnet50"} <= set(image_embedder_names())
    assert EMBEDDERS.entry("evnet").tags == {"modality": "image", "dim": 512, "offline": True}
    assert EMBEDDERS.entry("evnet-resnet50").tags["dim"] == 2048


def test_nothing_learned(frontend):
    assert not list(frontend.parameters())  # every filter is a buffer
    assert frontend.gabor_q0.shape == (512, 4, 31, 31)


def test_evnet_embedder_is_deterministic_float32():
    pics = images(2)
    a = load_embedder("evnet").embed_images(pics)
    b = load_embedder("evnet").embed_images(pics)  # a second build: the same Gabor bank
    assert a.shape == (2, 512) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])


def test_uniform_field_silences_centre_surround_cells(frontend):
    inner = (..., slice(40, -40), slice(40, -40))  # away from the borders
    noise = frontend(torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)), until="dog")
    scale = noise[inner].abs().mean()
    assert scale > 0.05
    for level in (0.2, 0.5, 0.9):
        grey = frontend(torch.full((1, 3, 224, 224), level), until="dog")
        assert grey.shape == (1, 4, 224, 224)  # r/g, g/r, b/y P cells, then the M cell
        assert grey[inner].abs().max() < 1e-3 * scale


def test_gabor_cells_prefer_their_orientation(frontend):
    p = frontend.params
    near_sf = (p["sf"] > 1) & (p["sf"] < 4)  # cells tuned within an octave of the grating's 2 c/°
    angles = (0.0, 45.0, 90.0, 135.0)
    with torch.no_grad():
        v1 = frontend(torch.cat([grating(t) for t in angles]))
    centre = v1[:, :, 14:42, 14:42].mean(dim=(2, 3)).numpy()
    simple = np.arange(512) < 256
    for i, theta in enumerate(angles):
        offset = np.abs((p["theta"] - theta + 90) % 180 - 90)  # orientation difference, 0..90°
        for cells in (simple, ~simple):
            tuned = centre[i, cells & near_sf & (offset < 15)]
            orthogonal = centre[i, cells & near_sf & (offset > 75)]
            assert len(tuned) >= 5 and len(orthogonal) >= 5
            assert tuned.mean() > 3 * orthogonal.mean()


def test_noise_is_off_by_default(frontend):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(frontend(x), frontend(x))
    noisy = EVNetFrontEnd(noise=True)
    assert not torch.equal(noisy(x), noisy(x))


def test_resnet50_without_weights_says_where_to_get_them(monkeypatch, tmp_path):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsUnavailableError, match=rf"zenodo.*{WEIGHTS_ENV}"):
        load_embedder("evnet-resnet50")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(WeightsUnavailableError, match="nowhere.pth is not a file"):
        load_embedder("evnet-resnet50")


@pytest.fixture(scope="module")
def random_evresnet() -> EVNetResNet50:
    return EVNetResNet50(pretrained=False)


def test_resnet50_loads_a_checkpoint_in_evnets_key_format(random_evresnet, tmp_path, monkeypatch):
    state = evnet_state_dict(random_evresnet.model)
    assert "voneblock.simple_conv_q0.weight" in state and "model.layer4.2.bn3.running_var" in state
    assert state["subcorticalblock.dog.multi_conv.convs.1.weight"].shape == (1, 3, 43, 43)
    path = tmp_path / "evresnet-50.pth"
    # as EVNet's train.py saves it: the weights under "model", with a numpy accuracy beside them
    torch.save({"model": state, "epoch": 49, "val_accuracy": np.float64(0.75)}, path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    model = load_embedder("evnet-resnet50")
    loaded = evnet_state_dict(model.model)  # every tensor arrived where it belongs
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    emb = model.embed_images(images(2, seed=3))
    assert emb.shape == (2, 2048) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_resnet50_checkpoint_with_a_wrong_key_is_refused(random_evresnet, tmp_path):
    state = evnet_state_dict(random_evresnet.model)
    state["model.fc.kernel"] = state.pop("model.fc.weight")
    path = tmp_path / "renamed.pth"
    torch.save({"model": state}, path)
    with pytest.raises(DataFormatError, match=r"unexpected key 'model\.fc\.kernel'.*missing key 'model\.fc\.weight'"):
        load_embedder("evnet-resnet50", weights=path)


def test_resnet50_checkpoint_of_another_subcortical_variant_is_refused(random_evresnet, tmp_path):
    state = {f"module.{k}": v for k, v in evnet_state_dict(random_evresnet.model).items()}  # DataParallel
    state["module.subcorticalblock.k_exc"] = state["module.subcorticalblock.k_exc"] * 2
    path = tmp_path / "variant.pth"
    torch.save(state, path)
    with pytest.raises(DataFormatError, match="subcorticalblock.k_exc is not EVNet's standard"):
        load_embedder("evnet-resnet50", weights=path)
