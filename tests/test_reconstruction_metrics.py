"""Image-reconstruction metrics: known answers for the math, the offline weights story, folders and
the CLI command. Learned backbones are replaced by small fixed stand-ins, except in the tests of
the real builders (random weights, 2 image pairs)."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from mindsight.cli import app
from mindsight.errors import DataFormatError, MissingFileError
from mindsight.evaluate import reconstruction as R

LEARNED = ("alexnet2", "alexnet5", "inception", "clip", "effnet", "swav", "clip_score",
           "clip_score_vit_h14")


@pytest.fixture(autouse=True)
def _no_weights(tmp_path_factory, monkeypatch):
    """An empty torch hub and Hugging Face cache (conftest sets HF_HUB_OFFLINE=1); built backbones
    are forgotten after each test."""
    import huggingface_hub.constants

    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf")))
    yield home
    R.clear_backbone_cache()


def _pooled(size: int, seed: int):
    """A fixed stand-in feature extractor: pooled pixels through a fixed random projection."""
    proj = torch.randn(3 * size * size, 64, generator=torch.Generator().manual_seed(seed))
    return lambda x: F.adaptive_avg_pool2d(x, size).flatten(1) @ proj


STAND_INS = {
    "alexnet": lambda x: {"alexnet2": F.adaptive_avg_pool2d(x, 16).flatten(1),
                          "alexnet5": F.adaptive_avg_pool2d(x, 4).flatten(1)},
    "inception": _pooled(8, 1), "efficientnet_b1": _pooled(8, 2), "swav": _pooled(6, 3),
    "clip_vit_l14": _pooled(4, 4), "clip_vit_h14": _pooled(4, 5),
}


def _photos(n: int = 40, size: int = 96, seed: int = 0) -> torch.Tensor:
    """n random crops of skimage's bundled photographs, (n, 3, size, size) in [0, 1]."""
    import skimage.data as data

    photos = [getattr(data, name)() for name in
              ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")]
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - size), rng.integers(0, p.shape[1] - size)
        crops.append(torch.from_numpy(p[y : y + size, x : x + size].copy()).permute(2, 0, 1))
    return torch.stack(crops).float() / 255


def _write(folder, images: torch.Tensor, names=None, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        arr = (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{names[i] if names else f'{i:03d}'}.{ext}")
    return folder


# ----------------------------------------------------------------------------- the math


def test_pixcorr_known_answers():
    x = _photos(4, size=64)
    assert R.pixcorr(x, x) == pytest.approx(1, abs=1e-9)
    assert R.pixcorr(x, 1 - x) == pytest.approx(-1, abs=1e-9)  # the negative
    assert R.pixcorr(x, 0.5 * x + 0.2) == pytest.approx(1, abs=1e-9)  # affine: r is invariant
    other = x.roll(1, dims=0)
    expected = np.mean([np.corrcoef(F.interpolate(a[None], size=(425, 425), mode="bilinear",
                                                  antialias=True).flatten(),
                                    F.interpolate(b[None], size=(425, 425), mode="bilinear",
                                                  antialias=True).flatten())[0, 1]
                        for a, b in zip(x, other, strict=True)])
    assert R.pixcorr(x, other) == pytest.approx(expected, abs=1e-6)
    assert abs(R.pixcorr(x, other)) < 0.9


def test_ssim_matches_skimage_on_grayscale_425():
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    x = _photos(2, size=64)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert R.ssim(x, x) == pytest.approx(1, abs=1e-9)
    gray = [rgb2gray(F.interpolate(t, size=(425, 425), mode="bilinear", antialias=True)
                     .permute(0, 2, 3, 1).double().numpy()) for t in (x, y)]
    expected = np.mean([structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=1.0)
                        for a, b in zip(*gray, strict=True)])
    assert R.ssim(x, y) == pytest.approx(expected, abs=1e-9)
    assert 0.1 < R.ssim(x, y) < 0.95


def _at(deg: float) -> list[float]:
    """A 3-d vector whose Pearson r with _at(other) is cos(deg − other): the centred plane of R³."""
    u = np.array([1, -1, 0]) / math.sqrt(2)
    v = np.array([1, 1, -2]) / math.sqrt(6)
    t = math.radians(deg)
    return list(math.cos(t) * u + math.sin(t) * v)


def test_two_way_hand_computed():
    seen = torch.tensor([_at(0), _at(120), _at(240)])
    # reconstruction 0 at 10°: own r = cos 10°, others cos 110°, cos 230° → wins 2/2
    # reconstruction 1 at 70°: own r = cos 50°, others cos 70° (seen 0), cos 170° → wins 2/2
    # reconstruction 2 at 330°: own r = cos 90° = 0; seen 0 has cos 30° (loses), seen 1 cos 150° → 1/2
    gen = torch.tensor([_at(10), _at(70), _at(330)])
    assert R.two_way_identification(seen, gen) == pytest.approx((1 + 1 + 0.5) / 3)
    # Pearson r ignores offsets and positive scales of each feature vector
    assert R.two_way_identification(3 * seen + 7, gen * torch.tensor([[2.0], [0.5], [9.0]]) - 1) == \
        pytest.approx(5 / 6)
    assert R.two_way_identification(seen, seen) == 1.0
    assert R.two_way_identification(seen, -seen) == 0.0


def test_two_way_matches_a_per_image_loop():
    g = torch.Generator().manual_seed(0)
    seen = torch.randn(25, 30, generator=g)
    gen = seen + 1.5 * torch.randn(25, 30, generator=g)
    loop = []
    for j in range(25):
        own = np.corrcoef(seen[j], gen[j])[0, 1]
        others = [np.corrcoef(seen[i], gen[j])[0, 1] for i in range(25) if i != j]
        loop.append(np.mean([o < own for o in others]))
    assert R.two_way_identification(seen, gen) == pytest.approx(np.mean(loop), abs=1e-12)
    assert 0.6 < R.two_way_identification(seen, gen) < 1.0


def test_two_way_needs_two_pairs_and_matching_shapes():
    with pytest.raises(DataFormatError, match="at least 2"):
        R.two_way_identification(torch.ones(1, 4), torch.ones(1, 4))
    with pytest.raises(DataFormatError, match="differ"):
        R.two_way_identification(torch.ones(3, 4), torch.ones(2, 4))


def test_correlation_distance_and_clip_score_known_answers():
    a = torch.tensor([[1.0, -1.0, 0.0], [1.0, 2.0, 3.0], [1.0, -1.0, 0.0]])
    b = torch.tensor([[2.0, -2.0, 0.0], [3.0, 2.0, 1.0], [1.0, 1.0, -2.0]])  # r = 1, −1, 0
    assert R.correlation_distance(a, b) == pytest.approx((0 + 2 + 1) / 3)
    assert R.clip_score(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [0.0, 5.0]])) \
        == pytest.approx((1 / math.sqrt(2) + 1) / 2)
    constant = torch.ones(2, 3)  # zero variance: r is taken as 0
    assert R.correlation_distance(constant, a[:2]) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- scoring


def test_identical_folders_score_perfectly(tmp_path):
    x = _photos(6, size=80)
    _write(tmp_path / "seen", x)
    _write(tmp_path / "gen", x)
    m = R.evaluate_folders(tmp_path / "seen", tmp_path / "gen", backbones=STAND_INS)
    assert m["pixcorr"] == pytest.approx(1, abs=1e-6) and m["ssim"] == pytest.approx(1, abs=1e-6)
    for k in R.TWO_WAY:
        assert m[k] == 1.0, k
    assert m["effnet"] == pytest.approx(0, abs=1e-6) and m["swav"] == pytest.approx(0, abs=1e-6)
    assert m["clip_score"] == pytest.approx(1, abs=1e-6)
    assert m["clip_score_vit_h14"] == pytest.approx(1, abs=1e-6)
    assert m["n_images"] == 6 and m["chance"] == 0.5 and m["resized_pairs"] == 0 and m["reasons"] == {}
    assert m["backbones"]["alexnet"]["weights"].startswith("injected")
    on_disk = json.loads((tmp_path / "gen" / "reconstruction_metrics.json").read_text())
    assert set(R.ALL_METRICS) <= set(on_disk) and on_disk["pixcorr"] == m["pixcorr"]


def test_shuffled_pairing_is_near_chance():
    x = _photos(40)
    perm = torch.roll(torch.arange(40), 7)  # every reconstruction is another photo's
    m = R.reconstruction_metrics(x, x[perm], backbones=STAND_INS,
                                 metrics=["pixcorr", "alexnet2", "alexnet5", "inception", "clip"])
    for k in ("alexnet2", "alexnet5", "inception", "clip"):
        assert 0.35 < m[k] < 0.65, (k, m[k])
    assert abs(m["pixcorr"]) < 0.3
    matched = R.reconstruction_metrics(x, (x + 0.15 * torch.rand(x.shape)).clamp(0, 1),
                                       backbones=STAND_INS, metrics=["alexnet5"])
    assert matched["alexnet5"] > 0.9


def test_seen_features_are_extracted_once_for_several_generated_sets():
    x = _photos(12, size=64)
    calls = []
    counting = {"alexnet": lambda b: calls.append(len(b)) or STAND_INS["alexnet"](b)}
    sets = [(x + 0.1 * torch.rand(x.shape, generator=torch.Generator().manual_seed(i))).clamp(0, 1)
            for i in range(3)]
    shared: dict = {}
    with_cache = [R.reconstruction_metrics(x, g, backbones=counting, metrics=["alexnet5"],
                                           seen_features=shared) for g in sets]
    assert sum(calls) == 12 * 4  # the seen images once, each generated set once
    alone = [R.reconstruction_metrics(x, g, backbones=STAND_INS, metrics=["alexnet5"]) for g in sets]
    assert [m["alexnet5"] for m in with_cache] == [m["alexnet5"] for m in alone]


def test_unavailable_weights_give_null_with_reason():
    x = _photos(3, size=64)
    m = R.reconstruction_metrics(x, x.flip(-1))  # real weights: not on this (offline) machine
    assert isinstance(m["pixcorr"], float) and isinstance(m["ssim"], float)
    for k in LEARNED:
        assert m[k] is None, k
        assert "weights" in m["reasons"][k], m["reasons"][k]
    assert "alexnet-owt-7be5be79.pth" in m["reasons"]["alexnet2"]
    assert "swav_800ep_pretrain" in m["reasons"]["swav"]
    assert "ViT-L-14" in m["reasons"]["clip"]
    offline = {"efficientnet_lite0"}  # its weights ship in a package
    assert all(b["weights"] is None and b["reason"] for k, b in m["backbones"].items() if k not in offline)
    assert set(m["backbones"]) == set(R.BACKBONE_FEATURES)
    assert "package" in m["backbones"]["efficientnet_lite0"]["weights"]
    assert 0.0 <= m["lite0_2way"] <= 1.0


def test_download_is_tried_only_when_online(monkeypatch):
    calls = []

    def fake_download(url, dst, progress=True):
        calls.append(url)
        raise OSError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    with pytest.raises(R.WeightsUnavailableError, match="HF_HUB_OFFLINE"):
        R.load_backbone("efficientnet_b1")
    assert calls == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(R.WeightsUnavailableError, match="downloading .*efficientnet_b1.* failed.*no route"):
        R.load_backbone("efficientnet_b1")
    assert calls == ["https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth"]


def test_real_weights_are_read_from_the_torch_hub_cache(_no_weights):
    """The offline path for real weights: checkpoints already in the torch hub cache are used."""
    from mindsight._torch_compat import ensure_torchvision

    ensure_torchvision()
    from torchvision.models import efficientnet_b1, resnet50

    ckpt = _no_weights / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(efficientnet_b1().state_dict(), ckpt / "efficientnet_b1-c27df63c.pth")
    swav = {f"module.{k}": v for k, v in resnet50().state_dict().items() if not k.startswith("fc.")}
    swav["module.projection_head.0.weight"] = torch.zeros(2, 2)  # extra SwAV heads are ignored
    torch.save(swav, ckpt / "swav_800ep_pretrain.pth.tar")
    x = _photos(2, size=64)
    m = R.reconstruction_metrics(x, x, metrics=["effnet", "swav", "alexnet2"])
    assert m["effnet"] == pytest.approx(0, abs=1e-6) and m["swav"] == pytest.approx(0, abs=1e-6)
    assert "efficientnet_b1-c27df63c.pth" in m["backbones"]["efficientnet_b1"]["weights"]
    assert "facebookresearch/swav" in m["backbones"]["swav"]["weights"]
    assert m["alexnet2"] is None and "alexnet-owt-7be5be79.pth" in m["reasons"]["alexnet2"]
    # the checkpoint's weights are the ones used: they differ from the random-weights build
    real = R.load_backbone("swav").extract(x[:1])["swav"]
    rand = R.load_backbone("swav", random_weights=True).extract(x[:1])["swav"]
    assert not torch.allclose(real, rand)

    R.clear_backbone_cache()
    torch.save({"module.conv1.weight": torch.zeros(64, 3, 7, 7)}, ckpt / "swav_800ep_pretrain.pth.tar")
    m = R.reconstruction_metrics(x, x, metrics=["swav"])
    assert m["swav"] is None and "lacks" in m["reasons"]["swav"]


def test_real_builders_with_random_weights():
    """Every torchvision backbone as the protocol builds it (input sizes, layers), 2 images."""
    x = _photos(2, size=64)
    dims = {"alexnet2": 192 * 31 * 31, "alexnet5": 256 * 15 * 15, "inception": 2048,
            "effnet": 1280, "swav": 2048}
    for name in ("alexnet", "inception", "efficientnet_b1", "swav"):
        bb = R.load_backbone(name, random_weights=True)
        assert bb.weights == "random (test only)"
        feats = R.extract_features(bb, x)
        assert set(feats) == set(R.BACKBONE_FEATURES[name])
        for k, v in feats.items():
            assert v.shape == (2, dims[k]) and torch.isfinite(v).all(), k
            assert R.two_way_identification(v, v) == 1.0
        assert R.load_backbone(name, random_weights=True) is bb  # cached per process
    m = R.reconstruction_metrics(x, x, random_weights=True, metrics=["alexnet2", "alexnet5"])
    assert m["alexnet2"] == m["alexnet5"] == 1.0
    assert m["backbones"] == {"alexnet": {"weights": "random (test only)"}}


def test_open_clip_builder_with_random_weights():
    """The CLIP builder's code path, on a smaller open_clip architecture (ViT-L/14 itself takes
    ~30 s on a 2-core CPU; the benchmark builds it)."""
    x = _photos(2, size=64)
    bb = R._build_open_clip("clip_vit_l14", "ViT-B-32", "openai", "test", True, "clip", "cpu", True)
    assert bb.weights == "random (test only)"
    feats = R.extract_features(bb, x)["clip"]
    assert feats.shape == (2, 512) and torch.isfinite(feats).all()
    assert R.clip_score(feats, feats) == pytest.approx(1)


def test_inputs_are_checked_and_resized():
    x = _photos(2, size=64)
    with pytest.raises(DataFormatError, match=r"\[0, 1\]"):
        R.reconstruction_metrics(x * 255, x, metrics=["pixcorr"])
    with pytest.raises(DataFormatError, match="2 seen images but 1"):
        R.reconstruction_metrics(x, x[:1], metrics=["pixcorr"])
    with pytest.raises(DataFormatError, match="unknown metric"):
        R.reconstruction_metrics(x, x, metrics=["fid"])
    as_uint8 = (x * 255).round().to(torch.uint8)
    m = R.reconstruction_metrics(as_uint8, x, metrics=["pixcorr", "ssim"])
    assert m["pixcorr"] > 0.999 and m["alexnet2"] is None and m["reasons"]["alexnet2"] == "not requested"
    one = R.reconstruction_metrics(x[:1], x[:1], backbones=STAND_INS, metrics=["pixcorr", "alexnet2", "effnet"])
    assert one["alexnet2"] is None and "at least 2" in one["reasons"]["alexnet2"]
    assert one["effnet"] == pytest.approx(0, abs=1e-6) and one["pixcorr"] == pytest.approx(1)


# ----------------------------------------------------------------------------- files and folders


def test_match_folders_by_stem_across_extensions(tmp_path):
    x = _photos(3, size=32)
    _write(tmp_path / "seen", x, names=["b", "a", "c"], ext="jpg")
    _write(tmp_path / "gen", x, names=["a", "c", "b"], ext="png")
    (tmp_path / "gen" / "reconstruction_metrics.json").write_text("{}")  # not an image: ignored
    (tmp_path / "gen" / "notes.txt").write_text("x")
    pairs = R.match_folders(tmp_path / "seen", tmp_path / "gen")
    assert [(s.name, g.name) for s, g in pairs] == [("a.jpg", "a.png"), ("b.jpg", "b.png"),
                                                   ("c.jpg", "c.png")]


def test_match_folders_errors_name_the_files(tmp_path):
    x = _photos(3, size=32)
    _write(tmp_path / "seen", x, names=["a", "b", "c"])
    _write(tmp_path / "gen", x, names=["a", "b", "zz"])
    with pytest.raises(DataFormatError, match=r"c\.png.*zz\.png"):
        R.match_folders(tmp_path / "seen", tmp_path / "gen")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="empty: no generated images"):
        R.match_folders(tmp_path / "seen", tmp_path / "empty")
    with pytest.raises(MissingFileError, match="nowhere"):
        R.match_folders(tmp_path / "nowhere", tmp_path / "gen")
    _write(tmp_path / "gen", x[:1], names=["a"], ext="jpg")
    with pytest.raises(DataFormatError, match=r"a\.jpg, a\.png"):
        R.match_folders(tmp_path / "seen", tmp_path / "gen")


def test_image_modes_sizes_and_unreadable_files(tmp_path):
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 0))  # fully transparent red → white
    rgba.save(tmp_path / "rgba.png")
    Image.new("L", (30, 30), 128).save(tmp_path / "gray.png")
    Image.new("RGB", (50, 50), (0, 0, 255)).convert("P").save(tmp_path / "pal.png")
    x = R.load_images([tmp_path / "rgba.png", tmp_path / "gray.png", tmp_path / "pal.png"])
    assert x.shape == (3, 3, 256, 256) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.ones(3, 256, 256))
    assert torch.allclose(x[1], torch.full((3, 256, 256), 128 / 255))
    assert torch.allclose(x[2, 2], torch.ones(256, 256)) and x[2, :2].abs().max() < 1e-6
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(DataFormatError, match=r"deep\.png: image mode 'I;16' \(16-bit"):
        R.load_images([tmp_path / "deep.png"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match=r"broken\.png: not a readable image"):
        R.load_images([tmp_path / "broken.png"])
    with pytest.raises(MissingFileError, match=r"gone\.png"):
        R.load_images([tmp_path / "gone.png"])

    photos = _photos(4, size=64)
    _write(tmp_path / "seen", photos)
    gen = tmp_path / "gen"
    _write(gen, photos[:2])
    for i in (2, 3):  # the same photos, saved larger: resized to 256 like the others
        Image.fromarray((photos[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) \
            .resize((128, 128), Image.BILINEAR).save(gen / f"{i:03d}.png")
    m = R.evaluate_folders(tmp_path / "seen", gen, out=tmp_path / "m.json", metrics=["pixcorr", "ssim"])
    assert m["resized_pairs"] == 2 and m["pixcorr"] > 0.97
    assert json.loads((tmp_path / "m.json").read_text())["resized_pairs"] == 2


# ----------------------------------------------------------------------------- command line


def test_cli_evaluate_reconstruction(tmp_path):
    x = _photos(4, size=48)
    _write(tmp_path / "seen", x)
    _write(tmp_path / "gen", (x * 0.8 + 0.1), ext="jpg")
    result = CliRunner().invoke(app, ["evaluate-reconstruction", "--seen", str(tmp_path / "seen"),
                                      "--generated", str(tmp_path / "gen"), "--device", "cpu"],
                                catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "pixcorr" in result.output and "alexnet2" in result.output
    m = json.loads((tmp_path / "gen" / "reconstruction_metrics.json").read_text())
    for key in (*R.METRICS, "n_images", "chance", "backbones", "reasons"):
        assert key in m, key
    assert m["n_images"] == 4 and m["pixcorr"] > 0.95 and m["alexnet2"] is None

    out = tmp_path / "elsewhere" / "m.json"
    result = CliRunner().invoke(app, ["evaluate-reconstruction", "--seen", str(tmp_path / "seen"),
                                      "--generated", str(tmp_path / "gen"), "--out", str(out),
                                      "--metric", "pixcorr"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["reasons"]["ssim"] == "not requested"


def test_cli_evaluate_reconstruction_error_is_one_line(tmp_path, capsys):
    import sys

    from mindsight.cli import main

    x = _photos(2, size=32)
    _write(tmp_path / "seen", x, names=["a", "b"])
    _write(tmp_path / "gen", x, names=["a", "c"])
    argv = sys.argv
    sys.argv = ["mindsight", "evaluate-reconstruction", "--seen", str(tmp_path / "seen"),
                "--generated", str(tmp_path / "gen")]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = argv
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "b.png" in err and "c.png" in err and "Traceback" not in err


def test_pairs_of_different_aspect_ratios_are_refused(tmp_path):
    from PIL import Image

    for d, size in (("seen", (64, 64)), ("gen", (96, 48))):
        (tmp_path / d).mkdir()
        Image.new("RGB", size, (10, 20, 30)).save(tmp_path / d / "a.png")
    with pytest.raises(R.DataFormatError, match="aspect ratio"):
        R.evaluate_folders(tmp_path / "seen", tmp_path / "gen", metrics=["pixcorr"])
    Image.new("RGB", (128, 128), (10, 20, 30)).save(tmp_path / "gen" / "a.png")  # same shape, bigger: fine
    m = R.evaluate_folders(tmp_path / "seen", tmp_path / "gen", metrics=["pixcorr"])
    assert m["resized_pairs"] == 1
