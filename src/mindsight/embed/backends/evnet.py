"""EVNet's fixed biological front-end (Piper, Oliveira & Marques, NeurIPS 2025) as image embedders.

``evnet``           the unlearned front-end alone: light adaptation, LGN centre-surround cells,
                    contrast normalisation, a V1 Gabor bank; its 512 V1 channels averaged over
                    space → 512-d. No weights to download.
``evnet-resnet50``  front-end, 1×1 bottleneck and EVNet's ImageNet-trained ResNet-50 back-end
                    (``evresnet-50.pth`` from Zenodo, a local file); the 2048-d pooled feature
                    before the classifier. ``pretrained=False`` builds it with random weights.

Facts (constants, formulas, checkpoint keys) are from github.com/lucaspiper99/evnet, cited as
file:line; the "standard" SubcorticalBlock and the ResNet-50 VOneBlock config. The code is
mindsight's own and gives EVNet's responses (checked against theirs to ~1e-6) faster on a CPU:
Gaussians run as two matrix products, and each Gabor filter convolves only the one LGN channel
it reads. Their stochastic (Fano factor) noise is implemented but off by default.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mindsight._torch_compat import ensure_torchvision
from mindsight.embed.base import EMBEDDERS, ImageEmbedder
from mindsight.errors import DataFormatError, WeightsUnavailableError

PPD = 224 / 7  # pixels per degree: a 224-px image spans 7° (evnet.py:10)
WEIGHTS_ENV = "MINDSIGHT_EVNET_WEIGHTS"
ZENODO = "https://zenodo.org/records/17465273/files/evresnet-50.pth"  # README.md:14

# LGN cells: the rows of least l2_error of tuning/p_cell_hyperparams.csv:1431 (row 357) and
# tuning/m_cell_hyperparams.csv:1022 (row 250), picked as params.py:52-58 does. Radii in pixels at
# 32 px/°; ratio = surround/centre peak; c50, n: contrast normalisation; k_exc: output gain.
P_CELL = dict(rc=1.494800846305186, rs=7.152799999999999, ratio=-0.011894632845946745,
              radius_cn=13.411499999999998, c50=1.0, n=1.0, k_exc=5.29525198895458)
M_CELL = dict(rc=2.4203904, rs=17.091879253424104, ratio=-0.0037506100912582663,
              radius_cn=28.872192000000002, c50=0.18501829502844522, n=0.8068704487883759,
              k_exc=2.8494928592250206)
# (centre, surround) weights on R, G, B: P cells r/g, g/r, b/y; M cell w/b (params.py:62-67).
P_COLOURS = (((1, 0, 0), (0, 1, 0)), ((0, 1, 0), (1, 0, 0)), ((0, 0, 1), (0.5, 0.5, 0)))
M_COLOURS = (((1 / 3,) * 3, (1 / 3,) * 3),)
LGN_FANO, V1_FANO, V1_K_EXC = 0.4, 0.93, 5.3  # evnet.py:14; configs/subcort_kwargs.yml:10-11
EPSILON = 1e-5  # modules.py:8
# VOneBlock before a ResNet-50: configs/vone_kwargs.yml:1-10 and evnet.py:16 (sf_corr).
N_SIMPLE = N_COMPLEX = 256
GABOR_SIZE, GABOR_STRIDE, SF_MAX_CPD, SF_CORR = 31, 4, 8.0, 0.75
GABOR_SEED = 42  # train.py:45 default, passed as gabor_seed (train.py:202; train.sh:10 sets none)


def kernel_size(radius: float, energy: float = 0.75) -> int:
    """Odd width keeping ``energy`` of a Gaussian exp(-r²/radius²) (params.py:17-29; energy :60)."""
    return int(2 * math.ceil(math.sqrt(-2 * math.log(1 - energy)) * radius / math.sqrt(2)) + 1)


def gaussian_1d(radius: float, size: int) -> torch.Tensor:
    """exp(-t²/radius²), i.e. σ = radius/√2 (modules.py:198), peak 1, on ``size`` integer taps."""
    t = torch.arange(size, dtype=torch.float64) - size // 2
    return torch.exp(-(t**2) / radius**2)


def blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Each channel of ``x`` correlated with k⊗k, reflect-padded to its own size (EVNet: 'same',
    'reflect'; modules.py:192, 252), as two matrix products that fold in the padding."""
    return _blur_matrix(k, x.shape[-2]) @ x @ _blur_matrix(k, x.shape[-1]).T


def _blur_matrix(k: torch.Tensor, n: int) -> torch.Tensor:
    """(n, n) matrix of 1-D correlation with ``k`` over n samples, reflecting at both ends."""
    p, period = k.numel() // 2, max(2 * (n - 1), 1)
    src = (torch.arange(n, device=k.device)[:, None] + torch.arange(-p, p + 1, device=k.device)) % period
    src = torch.where(src > n - 1, period - src, src)
    m = torch.zeros(n, n, dtype=k.dtype, device=k.device)
    return m.scatter_add_(1, src, k.expand(n, -1).contiguous())


class LGNPathway(nn.Module):
    """One LGN cell type: colour-opponent difference of Gaussians (DoG), divisive contrast
    normalisation y / (sqrt(G∗y²) + c50)^n and a gain k_exc (modules.py:170-261, 296-303)."""

    def __init__(self, cell: dict, colours: tuple) -> None:
        super().__init__()
        size = kernel_size(cell["rs"])
        centre, surround = gaussian_1d(cell["rc"], size), gaussian_1d(cell["rs"], size)
        w = torch.tensor(colours, dtype=torch.float64)  # (cells, centre/surround, RGB)
        w[:, 1] *= cell["ratio"]
        # Each DoG filter is scaled to |sum| = 1 over its taps and colours (modules.py:203).
        total = w[:, 0].sum(1) * centre.sum() ** 2 + w[:, 1].sum(1) * surround.sum() ** 2
        w /= total.abs().view(-1, 1, 1)
        pool = gaussian_1d(cell["radius_cn"], kernel_size(cell["radius_cn"]))
        for name, value in dict(centre=centre, surround=surround, pool=pool / pool.sum(), w=w).items():
            self.register_buffer(name, value.float())
        for name in ("c50", "n", "k_exc"):
            self.register_buffer(name, torch.full((1, len(colours), 1, 1), cell[name]))

    def dog(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) light-adapted RGB → (B, cells, H, W) centre-surround responses."""
        return (torch.einsum("oc,bchw->bohw", self.w[:, 0], blur(x, self.centre))
                + torch.einsum("oc,bchw->bohw", self.w[:, 1], blur(x, self.surround)))

    def normalize(self, y: torch.Tensor) -> torch.Tensor:
        return y / (blur(y**2, self.pool).sqrt() + self.c50) ** self.n

    def dense_kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """EVNet's 2-D DoG and pooling kernels, as its checkpoints hold them (modules.py:202, 257)."""
        dog = (torch.einsum("oc,h,w->ochw", self.w[:, 0], self.centre, self.centre)
               + torch.einsum("oc,h,w->ochw", self.w[:, 1], self.surround, self.surround))
        return dog, torch.outer(self.pool, self.pool).expand(len(self.w), 1, -1, -1)


def sample_gabor_params(seed: int = GABOR_SEED, n_simple: int = N_SIMPLE, n_complex: int = N_COMPLEX,
                        sf_max: float = SF_MAX_CPD, sf_corr: float = SF_CORR) -> dict[str, np.ndarray]:
    """Gabor parameters drawn from macaque V1 statistics (params.py:140-328): phase uniform;
    orientation (°) De Valois 1982a (:190); envelope widths nx, ny in periods, Ringach 2002b
    (:193-201); spatial frequency (cycles/°) De Valois 1982b, foveal (:216-217), correlated with
    nx; each filter reads one of the four LGN channels, 128 each (:320-324). Draws from
    ``np.random.RandomState(seed)`` in EVNet's order: a seed gives EVNet's bank for that seed."""
    rng, n = np.random.RandomState(seed), n_simple + n_complex
    phase = np.interp(rng.rand(n), [0, 1], [0, 360])
    ori_p = np.array([66, 49, 77, 54]) / 246
    theta = np.interp(rng.rand(n), np.r_[0, ori_p.cumsum()], [-22.5, 22.5, 67.5, 112.5, 157.5])
    n_bins = np.logspace(-1, 0, 5)
    n_joint = np.array([[2, 0, 1, 0], [8, 9, 4, 1], [1, 2, 19, 17], [0, 0, 1, 7]], dtype=float)
    nx_p, ny_given_nx = n_joint.sum(1) / n_joint.sum(), n_joint / n_joint.sum(1, keepdims=True)
    sf_bins = np.array([0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8, 11.2])
    keep = int(np.nonzero(sf_bins <= sf_max)[0][-1])
    parts = []
    sf_hists = [4, 4, 8, 25, 33, 26, 28, 12, 8], [0, 0, 9, 9, 7, 10, 23, 12, 14]  # simple, complex
    for count, hist in zip((n_simple, n_complex), sf_hists, strict=True):
        sf_p = np.array(hist[:keep], dtype=float) / sum(hist[:keep])
        z = rng.multivariate_normal([0, 0], [[1, sf_corr], [sf_corr, 1]], count)
        u = torch.special.ndtr(torch.from_numpy(z)).numpy()  # normal CDF (their scipy norm.cdf)
        nx = 10 ** np.interp(u[:, 0], np.r_[0, nx_p.cumsum()], np.log10(n_bins))
        rows = [np.nonzero(n_bins < a)[0][-1] for a in nx]
        ny = 10 ** np.array([np.interp(b, np.r_[0, ny_given_nx[r].cumsum()], np.log10(n_bins))
                             for b, r in zip(rng.rand(count), rows, strict=True)])
        sf = 2 ** np.interp(u[:, 1], np.r_[0, sf_p.cumsum()], np.log2(sf_bins[: keep + 1]))
        parts.append((nx, ny, sf))
    nx, ny, sf = (np.concatenate(p) for p in zip(*parts, strict=True))
    colour = np.repeat(np.arange(4), n // 4)
    rng.shuffle(colour)
    return dict(sf=sf, theta=theta, phase=phase, nx=nx, ny=ny, colour=colour)


def gabor_bank(p: dict[str, np.ndarray], phase_shift: float = 0.0, size: int = GABOR_SIZE
               ) -> torch.Tensor:
    """(filters, 4, size, size) Gabors, each on its one input channel (misc.py:51-72, evnet.py:85-91).
    θ is the direction in which the carrier varies, from the row (down) axis towards the columns."""
    f = p["sf"] / PPD  # cycles/pixel
    sx, sy = (p["nx"] / f)[:, None, None], (p["ny"] / f)[:, None, None]
    th, ph = np.deg2rad(p["theta"])[:, None, None], np.deg2rad(p["phase"])[:, None, None] + phase_shift
    r, c = np.meshgrid(np.arange(size) - size // 2, np.arange(size) - size // 2, indexing="ij")
    u, v = r * np.cos(th) + c * np.sin(th), -r * np.sin(th) + c * np.cos(th)
    g = np.exp(-0.5 * (u**2 / sx**2 + v**2 / sy**2)) / (2 * np.pi * sx * sy)
    bank = np.zeros((len(f), 4, size, size), np.float32)
    bank[np.arange(len(f)), p["colour"]] = g * np.cos(2 * np.pi * f[:, None, None] * u + ph)
    return torch.from_numpy(bank)


class EVNetFrontEnd(nn.Module):
    """SubcorticalBlock + VOneBlock, nothing learned: (B, 3, 224, 224) RGB in [0, 1] → (B, 512,
    56, 56) V1 responses (256 simple, then 256 complex cells). ``params`` describes the sampled
    Gabor bank (not one later loaded from a checkpoint)."""

    STAGES = ("light", "dog", "normalized", "lgn", "v1")

    def __init__(self, seed: int = GABOR_SEED, noise: bool = False) -> None:
        super().__init__()
        self.noise, self.params = noise, sample_gabor_params(seed)
        self.p, self.m = LGNPathway(P_CELL, P_COLOURS), LGNPathway(M_CELL, M_COLOURS)
        self.register_buffer("gabor_q0", gabor_bank(self.params))
        # quadrature partners: phase + π/2 (modules.py:105)
        self.register_buffer("gabor_q1", gabor_bank(self.params, math.pi / 2))

    def forward(self, x: torch.Tensor, until: str = "v1") -> torch.Tensor:
        """Run up to stage ``until``: 'light' ((x - mean)/mean, the mean of each image over pixels
        and colours; modules.py:210-233), 'dog', 'normalized', 'lgn' (gain, noise) or 'v1'."""
        if until not in self.STAGES:
            raise ValueError(f"until must be one of {self.STAGES}, not {until!r}")
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (mean + EPSILON)
        if until == "light":
            return x
        y = torch.cat([self.p.dog(x), self.m.dog(x)], 1)
        if until == "dog":
            return y
        y = torch.cat([self.p.normalize(y[:, :3]), self.m.normalize(y[:, 3:])], 1)
        if until == "normalized":
            return y
        y = y * torch.cat([self.p.k_exc, self.m.k_exc], 1)
        if self.noise:  # Poisson-like: variance = Fano factor × |response| (modules.py:305-311)
            y = y + torch.randn_like(y) * torch.sqrt(LGN_FANO * (y.abs() + EPSILON))
        return y if until == "lgn" else self.v1(y)

    def v1(self, lgn: torch.Tensor) -> torch.Tensor:
        """Simple cells: ReLU of a Gabor; complex cells: quadrature-pair energy / √2; all × k_exc,
        then optional noise of variance Fano × rate (modules.py:101-149)."""
        n, n_q0 = N_SIMPLE, len(self.gabor_q0)
        w = torch.cat([self.gabor_q0, self.gabor_q1[n:]])
        reads = w.abs().flatten(2).sum(2) > 0  # (filters, LGN channels)
        kw = dict(stride=GABOR_STRIDE, padding=GABOR_SIZE // 2)
        if (reads.sum(1) <= 1).all():  # one channel per filter: a thin convolution per channel
            size = [(s - 1) // GABOR_STRIDE + 1 for s in lgn.shape[-2:]]
            out = lgn.new_zeros(lgn.shape[0], len(w), *size)
            for c in range(lgn.shape[1]):
                idx = reads[:, c].nonzero().squeeze(1)
                out[:, idx] = F.conv2d(lgn[:, c : c + 1], w[idx, c : c + 1], **kw)
        else:
            out = F.conv2d(lgn, w, **kw)
        cx = torch.sqrt(out[:, n:n_q0] ** 2 + out[:, n_q0:] ** 2) / math.sqrt(2)
        y = V1_K_EXC * torch.cat([F.relu(out[:, :n]), cx], 1)
        if self.noise:
            y = y + torch.randn_like(y) * torch.sqrt(V1_FANO * F.relu(y) + EPSILON)
        return y


def to_unit_tensor(image: Any, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """PIL image → (3, crop, crop) in [0, 1]: short side to ``resize`` (bilinear), centre crop,
    as torchvision's Resize/CenterCrop/ToTensor compute it. EVNet's evaluation transform; its
    Normalize is mean 0, std 1 when light adaptation is on (data.py:24-29, 48)."""
    from PIL import Image

    w, h = image.size
    size = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
    image = image.convert("RGB").resize(size, Image.BILINEAR)
    left, top = int(round((size[0] - crop) / 2)), int(round((size[1] - crop) / 2))
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


class EVNetV1(ImageEmbedder):
    name, dim, batch_size = "evnet", N_SIMPLE + N_COMPLEX, 16

    def __init__(self, device: str = "cpu", seed: int = GABOR_SEED, noise: bool = False) -> None:
        self.device, self.transform = device, to_unit_tensor
        self.frontend = EVNetFrontEnd(seed, noise).eval().to(device)

    def encode_batch(self, pixels: Any) -> Any:
        return self.frontend(pixels).mean(dim=(2, 3))


class EVResNet50(nn.Module):
    """Front-end, 1×1 bottleneck 512 → 64 (evnet.py:133) and a ResNet-50 without its stem that
    starts at layer1 (backends.py:219-249, 366), in torchvision's layout and key names."""

    def __init__(self, seed: int = GABOR_SEED, noise: bool = False) -> None:
        super().__init__()
        ensure_torchvision()
        from torchvision.models import resnet50

        self.frontend = EVNetFrontEnd(seed, noise)
        self.bottleneck = nn.Conv2d(N_SIMPLE + N_COMPLEX, 64, 1, bias=False)
        self.resnet = resnet50(weights=None)
        self.resnet.conv1 = self.resnet.bn1 = self.resnet.relu = self.resnet.maxpool = nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2048): layer4 averaged over space, the classifier's input."""
        r = self.resnet
        x = r.layer4(r.layer3(r.layer2(r.layer1(self.bottleneck(self.frontend(x))))))
        return torch.flatten(r.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet.fc(self.features(x))


def evnet_state_dict(model: EVResNet50) -> dict[str, torch.Tensor]:
    """``model``'s tensors under the key names of EVNet's checkpoints, i.e. of an
    ``EVNet(model_arch='resnet-50', **standard)`` (evnet.py:122-140) as ``checkpoint["model"]``."""
    fe, sub = model.frontend, "subcorticalblock."
    out = {"voneblock.simple_conv_q0.weight": fe.gabor_q0,
           "voneblock.simple_conv_q1.weight": fe.gabor_q1,
           "voneblock_bottleneck.weight": model.bottleneck.weight}
    out.update({f"model.{k}": v for k, v in model.resnet.state_dict().items()})
    for i, cell in enumerate((fe.p, fe.m)):
        dog, pool = cell.dense_kernels()
        out[f"{sub}dog.multi_conv.convs.{i}.weight"] = dog
        out[f"{sub}contrast_norm.multi_conv.convs.{i}.weight"] = pool
    for name, key in (("k_exc", "k_exc"), ("c50", "contrast_norm.c50"), ("n", "contrast_norm.n")):
        out[sub + key] = torch.cat([getattr(fe.p, name), getattr(fe.m, name)], 1)
    return {k: v.detach().clone() for k, v in out.items()}


def load_evnet_weights(model: EVResNet50, path: str | Path) -> None:
    """Load an EVNet checkpoint (``{"model": state_dict, ...}`` as train.py saves it, or a bare
    state dict; a DataParallel ``module.`` prefix is dropped) into ``model``: Gabor bank, bottleneck
    and ResNet are copied; the fixed SubcorticalBlock tensors must equal those built here."""
    import pickle

    scalar = np._core.multiarray.scalar  # train.py's checkpoints hold a numpy val_accuracy
    allowed = [np.dtype, np.dtypes.Float64DType, scalar, (scalar, "numpy.core.multiarray.scalar")]
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataFormatError(
            f"{path}: torch.load(weights_only=True) refused it ({str(exc).strip().splitlines()[-1]});"
            " if you trust the file, keep its weights: "
            'torch.save(torch.load(PATH, weights_only=False)["model"], NEW_PATH)'
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise DataFormatError(f"{path}: not an EVNet checkpoint (a dict with a 'model' state dict)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = evnet_state_dict(model)
    extra, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    if extra or missing:
        found = [f"{what} {keys[0]!r}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")
                 for what, keys in (("unexpected key", extra), ("missing key", missing)) if keys]
        raise DataFormatError(f"{path}: not EVNet's EVResNet-50 ({ZENODO}): {'; '.join(found)}")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise DataFormatError(
                f"{path}: {key} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
        fixed = key.startswith("subcorticalblock.")
        if fixed and not torch.allclose(got.float(), want, rtol=1e-4, atol=1e-6):
            raise DataFormatError(f"{path}: {key} is not EVNet's standard SubcorticalBlock "
                                  f"(max |diff| {(got.float() - want).abs().max().item():.3g})")
    with torch.no_grad():
        model.frontend.gabor_q0.copy_(state["voneblock.simple_conv_q0.weight"])
        model.frontend.gabor_q1.copy_(state["voneblock.simple_conv_q1.weight"])
        model.bottleneck.weight.copy_(state["voneblock_bottleneck.weight"])
    resnet = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    model.resnet.load_state_dict(resnet)


class EVNetResNet50(ImageEmbedder):
    name, dim, batch_size = "evnet-resnet50", 2048, 16

    def __init__(self, device: str = "cpu", weights: str | Path | None = None,
                 pretrained: bool = True, noise: bool = False) -> None:
        self.device, self.transform = device, to_unit_tensor
        path = (weights or os.environ.get(WEIGHTS_ENV)) if pretrained else None
        if pretrained and (not path or not Path(path).is_file()):
            where = f" ({path} is not a file)" if path else ""
            raise WeightsUnavailableError(
                f"evnet-resnet50 needs EVNet's weights{where}: download {ZENODO} "
                f"and pass weights=PATH or set {WEIGHTS_ENV}=PATH")
        self.model = EVResNet50(noise=noise)
        if path:
            load_evnet_weights(self.model, path)
        self.model = self.model.eval().to(device)

    def encode_batch(self, pixels: Any) -> Any:
        return self.model.features(pixels)


@EMBEDDERS.register(
    "evnet", modality="image", dim=512, offline=True,
    description="EVNet's fixed subcortical + V1 front-end (nothing learned), V1 channels pooled",
)
def _evnet(device: str = "cpu", seed: int = GABOR_SEED, noise: bool = False) -> EVNetV1:
    return EVNetV1(device=device, seed=seed, noise=noise)


@EMBEDDERS.register(
    "evnet-resnet50", modality="image", dim=2048, offline=True,
    description=f"EVResNet-50: EVNet front-end + ImageNet ResNet-50 (weights file: {WEIGHTS_ENV})",
)
def _evnet_resnet50(device: str = "cpu", weights: str | Path | None = None,
                    pretrained: bool = True, noise: bool = False) -> EVNetResNet50:
    return EVNetResNet50(device=device, weights=weights, pretrained=pretrained, noise=noise)
