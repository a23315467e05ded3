"""``mindsight simulate``: write a complete THINGS-EEG2- or THINGS-MEG-like dataset with a known ceiling.

Layout of the output folder (each part in its public format, read by ``mindsight.io``)::

    images/                       training_images/, test_images/, image_metadata.npy
    Preprocessed_data_250Hz/      NICE/ATM release: sub-XX/preprocessed_eeg_{training,test}.npy
                                  (raw pickle; 63 ch, 250 Hz, 0–0.996 s; ``times`` has 300 values)
    preprocessed_data/            official release: np.save(dict), 17 ch, 100 Hz, -0.2–0.79 s
    raw_data/                     raw release (optional): sub-XX/ses-01/raw_eeg_*.npy, 1000 Hz,
                                  63 ch + stim row, in volts
    EEG-ImageNet/, imagenet/      EEG-ImageNet release (optional, layout ``eeg-imagenet``): the
                                  training concepts as classes, see :mod:`mindsight.simulate.eeg_imagenet`
    simulation.json               the configuration, per-subject ideal-observer ceilings, credits

and in MEG mode (``modality='meg'``, see :mod:`mindsight.simulate.meg`)::

    images/                       as above, plus test_concept_exemplars/ (the large test set)
    derivatives/preprocessed/     official THINGS-MEG derivative: preprocessed_P{n}-epo.fif
    sourcedata/                   sample_attributes_P{n}.csv
    THINGS-MEG-atm/sub-XX/        ATM's pickles: preprocessed_meg_training.pkl, preprocessed_meg_zs_test.pkl

The perceptual front-end (``front_end``, on by default): the brain sees a low-acuity view of the
picture. THINGS-EEG2's pictures span about 7° of visual angle, over which acuity falls with
eccentricity, and where the subject fixates and attends varies from trial to trial. So the
mid- and high-level features are those of UBP's foveated blur of the picture (sharp at the
centre, blurrier towards the edges) at one of a few acuity levels (``acuity_kernels``: Gaussian
kernels at 224 px), one level drawn uniformly per trial; pixel statistics and the semantic
level are untouched. The ideal observer knows this and marginalises over the levels drawn in
the averaged repetitions (:class:`mindsight.simulate.observer.MixtureObserver`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mindsight._atomic import write_json
from mindsight.errors import DataFormatError, UnknownNameError
from mindsight.io.containers import write_npy_dict, write_pickle_dict
from mindsight.io.things_eeg2 import CH_NAMES_17, CH_NAMES_63
from mindsight.output import progress_bar
from mindsight.simulate import stimuli
from mindsight.simulate.features import image_levels, perceived_levels
from mindsight.simulate.forward import evoked, evoked_trials, make_brain
from mindsight.simulate.noise import NoiseModel, make_noise
from mindsight.simulate.observer import MixtureObserver, decide, whitener

SFREQ = 250.0
TIMES = np.round(np.arange(-50, 250) / SFREQ, 4)  # -0.2 … 0.996 s, as NICE/ATM save them
KEEP = slice(50, 300)  # 0 … 0.996 s: the samples the NICE/ATM release keeps
LAYOUTS = ("nice-atm", "official", "raw")
EEG_IMAGENET = "eeg-imagenet"  # optional EEG layout: the training concepts as an EEG-ImageNet release
MEG_LAYOUTS = ("meg-official", "meg-atm")
MODALITIES = ("eeg", "meg")
ACUITY_KERNELS = (21, 41, 61)  # foveated-blur Gaussian kernels at 224 px: the front-end's acuity levels
FRONT_END = ("perceptual front-end: the brain sees a low-acuity view of the picture. The mid- and "
             "high-level features are EfficientNet-Lite0's of UBP's foveated blur of the picture "
             "(FoveaBlur: the picture and its Gaussian blur mixed by a radial mask, sharp at fixation, "
             "blurrier towards the edges; the image view foveated-kK, on the picture resized to 224 px), computed "
             "at each acuity level and projected on the PCA basis and z-scoring of the sharp pictures' "
             "features; one level is drawn uniformly at random per trial (fixation and attention vary). "
             "Pixel statistics (low) and the semantic level are those of the sharp picture and the name. "
             "The ideal observer marginalises over the levels of the averaged repetitions.")
FRONT_END_SOURCES = [
    "UBP: Wu et al., 'Bridging the Vision-Brain Gap with an Uncertainty-Aware Blur Prior', CVPR 2025 "
    "(FoveaBlur in base/inpating_data.py, HaitaoWuTJU/Uncertainty-aware-Blur-Prior)",
    "THINGS-EEG2: Gifford et al., NeuroImage 2022 (images of about 7 degrees of visual angle)",
]


@dataclass
class SimConfig:
    n_train_concepts: int = 300
    exemplars: int = 4
    n_test_concepts: int = 100
    n_reps_train: int = 4
    n_reps_test: int = 20
    subjects: list[int] = field(default_factory=lambda: [1, 2])
    image_size: int = 128
    noise: float = 1.0  # scales background, alpha and sensor noise (difficulty)
    shared: float = 0.6  # part of each subject's sources shared by all subjects
    seed: int = 0
    layouts: list[str] = field(default_factory=lambda: ["nice-atm", "official"])
    dtype: str = "float64"  # the releases' dtype; float32 halves the files
    observer_draws: int = 4  # fresh test sets drawn for the ceiling, besides the written one
    modality: str = "eeg"  # 'eeg' (63 channels, THINGS-EEG2 layouts) or 'meg' (271 CTF sensors)
    front_end: bool = True  # perceptual front-end: mid/high features of a foveated blur, level drawn per trial
    acuity_kernels: list[int] = field(default_factory=lambda: list(ACUITY_KERNELS))  # its levels (px at 224)


PRESETS: dict[str, SimConfig] = {
    "tiny": SimConfig(n_train_concepts=12, exemplars=3, n_test_concepts=8, n_reps_train=2,
                      n_reps_test=4, subjects=[1], image_size=64, layouts=list(LAYOUTS)),
    "demo": SimConfig(dtype="float32", subjects=[1]),
    "things": SimConfig(n_train_concepts=1654, exemplars=10, n_test_concepts=200, n_reps_train=4,
                        n_reps_test=80, subjects=list(range(1, 11)), image_size=224),
    # MEG: every exp image seen once, test images once per session (THINGS-MEG's design)
    "meg-tiny": SimConfig(n_train_concepts=12, exemplars=3, n_test_concepts=8, n_reps_train=1,
                          n_reps_test=4, subjects=[1], image_size=64, modality="meg",
                          layouts=list(MEG_LAYOUTS), dtype="float32"),
    "meg-demo": SimConfig(n_train_concepts=200, exemplars=4, n_test_concepts=50, n_reps_train=1,
                          n_reps_test=12, subjects=[1, 2], modality="meg", layouts=list(MEG_LAYOUTS),
                          dtype="float32"),
    "things-meg": SimConfig(n_train_concepts=1654, exemplars=12, n_test_concepts=200, n_reps_train=1,
                            n_reps_test=12, subjects=[1, 2, 3, 4], image_size=224, modality="meg",
                            layouts=list(MEG_LAYOUTS), dtype="float32"),
    # EEG-ImageNet: classes of equal size, each image seen once per subject (the release's design);
    # the THINGS-like image set is rendered too (the pictures come from it), with few test concepts
    # (tiny: the fewest classes × images a decoder learns zero-shot retrieval from, single trials)
    "eeg-imagenet-tiny": SimConfig(n_train_concepts=40, exemplars=5, n_test_concepts=2, n_reps_train=1,
                                   n_reps_test=1, subjects=[1], image_size=64, layouts=[EEG_IMAGENET],
                                   dtype="float32"),
    "eeg-imagenet-demo": SimConfig(n_train_concepts=40, exemplars=20, n_test_concepts=2, n_reps_train=1,
                                   n_reps_test=1, subjects=[1, 2], layouts=[EEG_IMAGENET], dtype="float32"),
    "eeg-imagenet": SimConfig(n_train_concepts=80, exemplars=50, n_test_concepts=2, n_reps_train=1,
                              n_reps_test=1, subjects=list(range(1, 17)), image_size=224,
                              layouts=[EEG_IMAGENET], dtype="float32"),
}
DIFFICULTY = {"easy": 0.6, "default": 1.0, "hard": 1.6}


def preset(name: str, difficulty: str = "default", **changes: Any) -> SimConfig:
    if name not in PRESETS:
        raise UnknownNameError(f"unknown simulation preset {name!r}; available: {', '.join(PRESETS)}")
    if difficulty not in DIFFICULTY:
        raise UnknownNameError(f"unknown difficulty {difficulty!r}; available: {', '.join(DIFFICULTY)}")
    cfg = replace(PRESETS[name], noise=PRESETS[name].noise * DIFFICULTY[difficulty])
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def noise_model(lead, subject: int, cfg: SimConfig, sfreq: float = SFREQ) -> NoiseModel:
    # sensor noise per channel scales with 1/sqrt(n_chans): the same total white-noise energy
    # against the (unit-norm) source maps whether 63 electrodes or 271 sensors record them
    sensor = 0.3 * cfg.noise * np.sqrt(len(CH_NAMES_63) / len(lead.ch_names))
    return make_noise(lead, subject, sfreq, seed=cfg.seed, background=1.0 * cfg.noise,
                      sensor=sensor, alpha=0.5 * cfg.noise)


def trials(signal: np.ndarray, noise: NoiseModel, n_reps: int, rng: np.random.Generator) -> np.ndarray:
    """(n_images, n_reps, n_chans, n_times) single trials: gain · signal + noise."""
    n, c, t = signal.shape
    out = np.empty((n, n_reps, c, t), dtype=np.float32)
    for r in range(n_reps):
        out[:, r] = noise.gains(n, rng)[:, None, None] * signal + noise.sample(n, t, rng)
    return out


def drawn_trials(signal: Callable[[np.ndarray], np.ndarray], n: int, n_levels: int, noise: NoiseModel,
                 n_reps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`trials` with the front-end: for each repetition an acuity level per image, drawn
    uniformly, and ``signal(levels)`` the (n, n_chans, n_times) responses of images 0 … n − 1 at
    ``levels``. Returns the trials and the (n, n_reps) drawn levels. With one level nothing is
    drawn and the trials are those of :func:`trials` for the same signal and rng."""
    out: np.ndarray | None = None
    drawn = np.zeros((n, n_reps), dtype=np.int64)
    for r in range(n_reps):
        if n_levels > 1:
            drawn[:, r] = rng.integers(0, n_levels, n)
        sig = signal(drawn[:, r])
        if out is None:
            out = np.empty((n, n_reps, *sig.shape[1:]), dtype=np.float32)
        out[:, r] = noise.gains(n, rng)[:, None, None] * sig + noise.sample(n, sig.shape[-1], rng)
    if out is None:
        raise DataFormatError("drawn_trials needs at least one repetition")
    return out, drawn


def acuity_kernels(cfg: SimConfig) -> list[int]:
    """The front-end's acuity levels (kernels at 224 px), none when it is off."""
    if not cfg.front_end:
        return []
    ks = [int(k) for k in cfg.acuity_kernels]
    if not ks or any(k < 1 or k % 2 == 0 for k in ks):
        raise DataFormatError(f"acuity_kernels must be positive odd kernel sizes, got {cfg.acuity_kernels}")
    return ks


def level_templates(brain, seen: dict[str, np.ndarray], rows: Any, times: np.ndarray) -> np.ndarray:
    """(n_levels, n_rows, n_chans, n_times) noise-free responses of images ``rows`` at every acuity level."""
    return np.stack([evoked(brain, {k: v[lv, rows] for k, v in seen.items()}, times)
                     for lv in range(len(next(iter(seen.values()))))])


def seen_at(brain, seen: dict[str, np.ndarray], rows: np.ndarray, times: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The ``signal`` of :func:`drawn_trials` for images ``rows``: their responses at the drawn
    levels, from the (n_levels, n_images, k) features ``seen``."""
    return lambda acuity: evoked_trials(brain, seen, rows, acuity, times)


def from_templates(templates: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """The ``signal`` of :func:`drawn_trials` from precomputed (n_levels, n, n_chans, n_times) responses."""
    return lambda acuity: templates[acuity, np.arange(templates.shape[1])]


def simulate(out: str | Path, cfg: SimConfig, *, device: str = "cpu",
             cache_dir: Any = None) -> dict[str, Any]:
    """Write the dataset of ``cfg`` under ``out`` and return its metadata (also in simulation.json).

    A finished dataset (simulation.json with the same configuration) is left as it is. The
    EfficientNet-Lite0 embeddings computed for the forward model are stored in the feature
    cache, so training on the simulated data does not extract them again.
    """
    from mindsight.io.images import read_image_set
    from mindsight.simulate.head import lead_field

    out = Path(out)
    if cfg.modality not in MODALITIES:
        raise DataFormatError(f"modality must be one of {MODALITIES}, got {cfg.modality!r}")
    allowed = MEG_LAYOUTS if cfg.modality == "meg" else (*LAYOUTS, EEG_IMAGENET)
    bad = sorted(set(cfg.layouts) - set(allowed))
    if bad:
        raise DataFormatError(f"unknown {cfg.modality} layout(s) {bad}; available: {', '.join(allowed)}")
    meta_path = out / "simulation.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        # simulations written before the front-end existed were made without it
        saved = {"front_end": False, "acuity_kernels": list(ACUITY_KERNELS), **meta.get("config", {})}
        if saved == asdict(cfg):
            return meta
        hint = ""
        if saved["front_end"] != cfg.front_end:
            flag = "--front-end (front_end=True)" if saved["front_end"] else "--no-front-end (front_end=False)"
            hint = f" (it was made {'with' if saved['front_end'] else 'without'} the perceptual front-end: {flag} reuses it)"
        raise DataFormatError(f"{out} holds a simulation with another configuration{hint}; choose another folder")
    train_c, test_c = stimuli.choose_concepts(cfg.n_train_concepts, cfg.n_test_concepts, cfg.seed)
    images = stimuli.write_image_set(out / "images", train_c, test_c, cfg.exemplars, cfg.image_size,
                                     cfg.seed)
    if cfg.modality == "meg":
        return _simulate_meg(out, cfg, images, train_c, test_c, device, cache_dir)
    imgset = read_image_set(images)
    paths = imgset["train"].paths + imgset["test"].paths
    names = [imgset["train"].concept_names[c] for c in imgset["train"].concept] + \
        [imgset["test"].concept_names[c] for c in imgset["test"].concept]
    kernels = acuity_kernels(cfg)
    if kernels:
        levels, embeddings, seen = perceived_levels(paths, names, kernels, device)
    else:
        levels, sharp = image_levels(paths, names, device)
        embeddings = {"sharp": sharp}
    n_tr = len(imgset["train"])
    _prime_feature_cache([imgset], imgset["train"].files + imgset["test"].files, embeddings, cache_dir)
    extra = {}
    if EEG_IMAGENET in cfg.layouts:
        from mindsight.simulate.eeg_imagenet import simulate_eeg_imagenet

        extra[EEG_IMAGENET] = simulate_eeg_imagenet(out, cfg, imgset, levels, seen if kernels else None,
                                                    embeddings, cache_dir)
        if cfg.layouts == [EEG_IMAGENET]:  # nothing THINGS-EEG2-like asked for
            ei = extra[EEG_IMAGENET]
            return _write_meta(meta_path, cfg, ei["subjects"],
                               "ideal-observer n-way retrieval among the zero-shot test images of the "
                               "EEG-ImageNet layout, on single trials (62 channels, 0-0.5 s; see "
                               "mindsight.simulate.observer)",
                               "see mindsight.simulate.forward / noise / eeg_imagenet and the README",
                               n_way=ei["n_way"], extra=extra)
    lead = lead_field()
    subjects_meta = {}
    for s in progress_bar(cfg.subjects, desc="simulating subjects", unit="subject"):
        rng = np.random.default_rng([cfg.seed, 3000 + s])
        brain = make_brain(lead, s, {k: v.shape[1] for k, v in levels.items()}, cfg.seed, cfg.shared)
        noise = noise_model(lead, s, cfg)
        if kernels:  # each trial's response from its own acuity level's features
            test_tmpl = level_templates(brain, seen, slice(n_tr, None), TIMES)  # (L, n_test, ch, t)
            data = {"train": drawn_trials(seen_at(brain, seen, np.arange(n_tr), TIMES), n_tr, len(kernels),
                                          noise, cfg.n_reps_train, rng)[0],
                    "test": drawn_trials(from_templates(test_tmpl), test_tmpl.shape[1], len(kernels),
                                         noise, cfg.n_reps_test, rng)[0]}
        else:
            signal = evoked(brain, levels, TIMES)
            data = {"train": trials(signal[:n_tr], noise, cfg.n_reps_train, rng),
                    "test": trials(signal[n_tr:], noise, cfg.n_reps_test, rng)}
        _write_preprocessed(out, s, data, cfg)
        if "raw" in cfg.layouts:
            _write_raw(out, s, brain, levels, n_tr, noise, cfg, rng, seen if kernels else None)
        subjects_meta[str(s)] = ideal_observer(test_tmpl if kernels else signal[n_tr:], data["test"],
                                               noise, cfg, rng)
    return _write_meta(meta_path, cfg, subjects_meta,
                       "ideal-observer n-way retrieval on repetition-averaged test EEG of the "
                       "63-channel 0–1 s release (see mindsight.simulate.observer)",
                       "see mindsight.simulate.forward / noise and the README", extra=extra)


def _write_meta(path: Path, cfg: SimConfig, subjects_meta: dict[str, Any], ceiling_definition: str,
                forward_model: str, n_way: int | None = None,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``simulation.json``: the configuration, per-subject and mean ceilings, credits, and
    ``extra`` entries (the metadata of optional layouts) at the end."""
    ceiling = {k: float(np.mean([m[k] for m in subjects_meta.values()]))
               for k in ("ceiling_top1", "ceiling_top5")}
    meta = {
        "config": asdict(cfg), "n_way": cfg.n_test_concepts if n_way is None else n_way, **ceiling,
        "subjects": subjects_meta,
        "ceiling_definition": ceiling_definition + (
            "; with the front-end the observer knows every acuity level's response and marginalises "
            "over the levels drawn for the averaged repetitions" if cfg.front_end else ""),
        "stimuli": stimuli.ATTRIBUTION,
        "forward_model": forward_model,
        "front_end": ({"enabled": True, "acuity_kernels": list(cfg.acuity_kernels), "description": FRONT_END,
                       "sources": FRONT_END_SOURCES} if cfg.front_end else
                      {"enabled": False, "description": "off: every trial's features are the sharp picture's"}),
        **(extra or {}),
    }
    write_json(path, meta)
    return meta


def _simulate_meg(out: Path, cfg: SimConfig, images: Path, train_c, test_c, device: str,
                  cache_dir: Any) -> dict[str, Any]:
    """MEG mode of :func:`simulate` (see :mod:`mindsight.simulate.meg`)."""
    from mindsight.io.things_meg import write_things_meg_atm, write_things_meg_official
    from mindsight.sensors import ctf_271
    from mindsight.simulate import meg
    from mindsight.simulate.head import lead_field

    meg.write_extra_images(images, test_c, cfg.exemplars, cfg.image_size, cfg.seed)
    d = meg.design(train_c, test_c, cfg.exemplars)
    kernels = acuity_kernels(cfg)
    image_paths = [images / p for p in d.image_path]
    if kernels:
        levels, embeddings, seen = perceived_levels(image_paths, d.concept_name, kernels, device)
        # a zero row at the end: catch trials (row -1) carry the image-independent response only
        seen = {k: np.concatenate([v, np.zeros((len(kernels), 1, v.shape[2]))], axis=1) for k, v in seen.items()}
    else:
        levels, sharp = image_levels(image_paths, d.concept_name, device)
        embeddings = {"sharp": sharp}
    ch_names = ctf_271()
    lead = lead_field(ch_names)
    n_tr = len(d.rows("train"))
    subjects_meta = {}
    for s in progress_bar(cfg.subjects, desc="simulating subjects", unit="subject"):
        rng = np.random.default_rng([cfg.seed, 3000 + s])
        brain = make_brain(lead, s, {k: v.shape[1] for k, v in levels.items()}, cfg.seed, cfg.shared)
        noise = noise_model(lead, s, cfg, meg.SFREQ)
        order = meg.sessions(d, cfg.n_reps_test, rng)
        shown = np.concatenate(order)
        if kernels:  # one acuity level drawn per shown trial
            epochs = np.concatenate([  # each shown trial once; in chunks to bound memory
                drawn_trials(seen_at(brain, seen, shown[i : i + 256], meg.TIMES), len(shown[i : i + 256]),
                             len(kernels), noise, 1, rng)[0][:, 0] for i in range(0, len(shown), 256)])
        else:
            signal = evoked(brain, levels, meg.TIMES)
            catch = evoked(brain, {k: np.zeros((1, v.shape[1])) for k, v in levels.items()}, meg.TIMES)
            templates = np.concatenate([signal, catch])
            epochs = np.concatenate([  # each shown trial once; in chunks to bound memory
                trials(templates[shown[i : i + 256]], noise, 1, rng)[:, 0] for i in range(0, len(shown), 256)])
        attrs = meg.attributes(d, order)
        dtype = np.dtype(cfg.dtype)
        if "meg-official" in cfg.layouts:
            write_things_meg_official(out, s, epochs.astype(dtype), ch_names, meg.SFREQ,
                                      float(meg.TIMES[0]), attrs,
                                      attrs["things_image_nr"].to_numpy())
        test_rows = d.rows("test")
        test_trials = np.stack([epochs[shown == r] for r in test_rows])  # (n_test, reps, ch, t)
        if "meg-atm" in cfg.layouts:
            train_rows = d.rows("train")
            train_trials = np.stack([epochs[shown == r][0] for r in train_rows])
            train_arr = train_trials.reshape(n_tr // cfg.exemplars, cfg.exemplars, 1,
                                             *train_trials.shape[1:])[..., meg.KEEP]
            test_arr = test_trials[:, None][..., meg.KEEP]
            write_things_meg_atm(out / "THINGS-MEG-atm", s, train_arr.astype(dtype),
                                 test_arr.astype(dtype), ch_names, meg.TIMES[meg.KEEP])
        test_tmpl = level_templates(brain, seen, test_rows, meg.TIMES) if kernels else signal[test_rows]
        subjects_meta[str(s)] = ideal_observer(test_tmpl, test_trials, noise, cfg, rng,
                                               times=meg.TIMES, keep=meg.KEEP)
    _prime_meg_feature_cache(out, images, d, embeddings, cfg, cache_dir)
    return _write_meta(out / "simulation.json", cfg, subjects_meta,
                       "ideal-observer n-way retrieval on repetition-averaged test MEG "
                       "(small test set, 271 sensors, 0–1 s; see mindsight.simulate.observer)",
                       "see mindsight.simulate.forward / noise / meg and the README")


def _prime_meg_feature_cache(out: Path, images: Path, d, embeddings: dict[str, np.ndarray], cfg: SimConfig,
                             cache_dir: Any) -> None:
    """Store the Lite0 features of every image partition a MEG run can ask for."""
    from mindsight.io.datasets import read_images

    official = "meg-official" in cfg.layouts
    root = out / "derivatives" / "preprocessed" if official else out / "THINGS-MEG-atm"
    imgsets = [read_images(root, images, test_set=t) for t in (("small", "large") if official else ("small",))]
    _prime_feature_cache(imgsets, d.image_path, embeddings, cache_dir)


def _prime_feature_cache(imgsets: list, files: list[str], embeddings: dict[str, np.ndarray],
                         cache_dir: Any) -> None:
    """Store ``embeddings[view]`` (row i: the image ``files[i]``, relative to the image root) as
    the EfficientNet-Lite0 features of both partitions of each image set through each image view
    (``sharp``, and the front-end's acuity views), unless already cached: a decoder trained on
    the simulated data finds them instead of extracting them again."""
    from mindsight.embed.features import cache_path, store_image_features

    row = {f: i for i, f in enumerate(files)}
    for view, feats in embeddings.items():
        for imgset in imgsets:
            for part in ("train", "test"):
                p = imgset[part]
                if not cache_path("efficientnet-lite0", "image", p.fingerprint(), cache_dir, view).is_file():
                    store_image_features(p, "efficientnet-lite0", feats[[row[f] for f in p.files]],
                                         cache_dir, view=view)


def ideal_observer(templates: np.ndarray, test_trials: np.ndarray, noise: NoiseModel,
                   cfg: SimConfig, rng: np.random.Generator, times: np.ndarray = TIMES,
                   keep: slice = KEEP) -> dict[str, float]:
    """Ceiling on this subject's test set: the written data plus ``observer_draws`` fresh ones.
    ``templates``: (n_test, n_chans, n_times) noise-free responses, or with the front-end
    (n_levels, n_test, n_chans, n_times), one per acuity level (each repetition draws one)."""
    n_reps = test_trials.shape[1]
    white = whitener(noise, len(times), keep, n_averaged=n_reps)
    if templates.ndim == 4:
        n_levels, n = templates.shape[:2]
        observer = MixtureObserver(white, templates[..., keep], n_reps)
        written = observer(test_trials.mean(1)[:, :, keep])
        ranks = [written]
        for _ in range(cfg.observer_draws):
            fresh = drawn_trials(from_templates(templates), n, n_levels, noise, n_reps, rng)[0]
            ranks.append(observer(fresh.mean(1)[:, :, keep]))
        return _ceilings(ranks)
    tmpl = templates[:, :, keep]
    written = decide(white, tmpl, test_trials.mean(1)[:, :, keep])
    ranks = [written]
    for _ in range(cfg.observer_draws):
        ranks.append(decide(white, tmpl, trials(templates, noise, n_reps, rng).mean(1)[:, :, keep]))
    return _ceilings(ranks)


def _ceilings(ranks: list[np.ndarray]) -> dict[str, float]:
    written = ranks[0]
    allr = np.concatenate(ranks)
    return {"ceiling_top1": float((allr < 1).mean()), "ceiling_top5": float((allr < 5).mean()),
            "ceiling_top1_written_test_set": float((written < 1).mean()),
            "n_test_sets": len(ranks)}


def _write_preprocessed(out: Path, subject: int, data: dict[str, np.ndarray], cfg: SimConfig) -> None:
    from scipy.signal import resample_poly

    dtype = np.dtype(cfg.dtype)
    for part, fname in (("train", "training"), ("test", "test")):
        x = data[part]
        if "nice-atm" in cfg.layouts:
            write_pickle_dict(out / "Preprocessed_data_250Hz" / f"sub-{subject:02d}" / f"preprocessed_eeg_{fname}.npy", {
                "preprocessed_eeg_data": x[..., KEEP].astype(dtype), "ch_names": list(CH_NAMES_63),
                "times": TIMES.copy()})
        if "official" in cfg.layouts:
            pick = [CH_NAMES_63.index(c) for c in CH_NAMES_17]
            x100 = resample_poly(x[:, :, pick], 2, 5, axis=-1)[..., :100]
            write_npy_dict(out / "preprocessed_data" / f"sub-{subject:02d}" / f"preprocessed_eeg_{fname}.npy", {
                "preprocessed_eeg_data": x100.astype(dtype), "ch_names": list(CH_NAMES_17),
                "times": np.round(np.arange(-20, 80) / 100.0, 2)})


def _write_raw(out: Path, subject: int, brain, levels: dict[str, np.ndarray], n_tr: int,
               noise: NoiseModel, cfg: SimConfig, rng: np.random.Generator,
               seen: dict[str, np.ndarray] | None = None) -> None:
    """One session per partition at 1000 Hz: RSVP with a 200 ms SOA, stim row with 1-based
    condition codes, plus a few catch trials (99999) that carry no image response. With
    ``seen`` (the front-end's (n_levels, n_images, k) features) each trial draws its acuity level."""
    sfreq, soa = 1000.0, 200
    t = np.arange(-200, 1000) / sfreq
    raw_noise = replace(noise, sfreq=sfreq)
    for fname, rows, reps in (("training", slice(0, n_tr), cfg.n_reps_train),
                              ("test", slice(n_tr, None), cfg.n_reps_test)):
        if seen is None:
            resp = evoked(brain, {k: v[rows] for k, v in levels.items()}, t).astype(np.float64)
            n_img = len(resp)
        else:
            feats = {k: v[:, rows] for k, v in seen.items()}
            n_img = feats["low"].shape[1]
        codes = rng.permutation(np.r_[np.repeat(np.arange(1, n_img + 1), reps), [99999] * 3])
        n_samples = soa * len(codes) + 2000
        eeg = raw_noise.sample(1, n_samples, rng)[0].astype(np.float64)
        stim = np.zeros(n_samples)
        gains = noise.gains(len(codes), rng)
        if seen is None:
            for k, code in enumerate(codes):
                onset = 1000 + soa * k
                stim[onset] = code
                if code != 99999:
                    eeg[:, onset - 200 : onset + 1000] += gains[k] * resp[code - 1]
        else:  # one acuity level drawn per trial; the responses a chunk of trials at a time
            acuity = rng.integers(0, len(feats["low"]), len(codes))
            stim[1000 + soa * np.arange(len(codes))] = codes
            shown = np.flatnonzero(codes != 99999)
            for start in range(0, len(shown), 256):
                ks = shown[start : start + 256]
                resp = evoked_trials(brain, feats, codes[ks] - 1, acuity[ks], t)
                for k, r in zip(ks, resp, strict=True):
                    onset = 1000 + soa * k
                    eeg[:, onset - 200 : onset + 1000] += gains[k] * r.astype(np.float64)
        ses = out / "raw_data" / f"sub-{subject:02d}" / "ses-01"
        write_npy_dict(ses / f"raw_eeg_{fname}.npy", {
            "raw_eeg_data": np.vstack([eeg * 1e-6, stim]), "ch_names": list(CH_NAMES_63) + ["stim"],
            "ch_types": ["eeg"] * 63 + ["stim"], "sfreq": sfreq, "highpass": 0.01, "lowpass": 100})
