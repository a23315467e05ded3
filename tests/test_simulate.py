"""The simulator: public layouts, forward-model statistics, noise, ideal observer, demo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mindsight.io.images import read_image_set
from mindsight.io.things_eeg2 import CH_NAMES_63, find_preprocessed, read_things_eeg2
from mindsight.recording import check_disjoint_concepts
from mindsight.simulate import preset, simulate
from mindsight.simulate.dataset import TIMES, drawn_trials, from_templates, level_templates, seen_at
from mindsight.simulate.dataset import trials as make_trials
from mindsight.simulate.features import fit_reduce, reduce
from mindsight.simulate.forward import LEVELS, evoked, make_brain
from mindsight.simulate.head import lead_field
from mindsight.simulate.noise import NoiseModel, make_noise
from mindsight.simulate.observer import (
    decide,
    decide_mixture,
    level_counts,
    two_way_accuracy_white,
    whitener,
)
from mindsight.simulate.stimuli import openmoji_concepts, render

SIZES = {"low": 8, "mid": 8, "high": 16, "semantic": 16}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    cache = tmp_path_factory.mktemp("sim-cache")
    meta = simulate(root, preset("tiny"), cache_dir=cache)
    return root, meta, cache


def test_written_files_read_back_in_every_public_layout(tiny):
    root, meta, _ = tiny
    images = read_image_set(root / "images")
    assert len(images["train"]) == 12 * 3 and len(images["test"]) == 8
    assert images.overlapping_concepts() == []
    train = read_things_eeg2(root / "Preprocessed_data_250Hz", 1, "train", images=images)
    test = read_things_eeg2(root / "Preprocessed_data_250Hz", 1, "test", images=images)
    assert train.data.shape == (36 * 2, 63, 250) and test.data.shape == (8 * 4, 63, 250)
    assert train.sfreq == 250.0 and train.times[0] == 0.0 and train.ch_names == tuple(CH_NAMES_63)
    assert train.description["layout"] == "nice-atm"
    check_disjoint_concepts(train, test)
    official = read_things_eeg2(root / "preprocessed_data", 1, "train", images=images)
    assert official.data.shape == (72, 17, 100) and official.sfreq == 100.0
    assert official.times[0] == pytest.approx(-0.2) and official.description["layout"] == "official"
    layouts = {f.layout for f in find_preprocessed(root)}
    assert {"official", "nice-atm"} <= layouts
    assert "CC BY-SA 4.0" in (root / "images" / "LICENSE-images.txt").read_text()
    saved = json.loads((root / "simulation.json").read_text())
    assert saved["n_way"] == 8 and 0 < saved["ceiling_top1"] <= 1
    # the perceptual front-end is on by default, recorded with its levels and sources
    assert saved["config"]["front_end"] and saved["config"]["acuity_kernels"] == [21, 41, 61]
    assert saved["front_end"]["enabled"] and any("UBP" in src for src in saved["front_end"]["sources"])


def test_a_simulation_from_before_the_front_end_is_reused_without_it(tiny, tmp_path):
    from mindsight.errors import DataFormatError

    meta = json.loads((tiny[0] / "simulation.json").read_text())
    old = {k: v for k, v in meta["config"].items() if k not in ("front_end", "acuity_kernels")}
    (tmp_path / "simulation.json").write_text(json.dumps({**meta, "config": old}))
    assert simulate(tmp_path, preset("tiny", front_end=False))["config"] == old
    with pytest.raises(DataFormatError, match="without the perceptual front-end"):
        simulate(tmp_path, preset("tiny"))


def test_raw_release_goes_through_mindsight_preprocess(tiny, tmp_path):
    from mindsight.preprocess.pipeline import VARIANTS, preprocess_subject

    root, _, _ = tiny
    cfg = VARIANTS["official"].with_overrides(reps_per_session={"train": 2, "test": 4}, mvnn=None)
    out = preprocess_subject(root / "raw_data", 1, tmp_path, cfg)
    d = np.load(out["train"], allow_pickle=True).item()
    assert d["preprocessed_eeg_data"].shape == (36, 2, 17, 100)  # catch trials (99999) dropped
    # the epochs carry the simulated responses: repetitions of one image agree more than
    # different images do
    x = d["preprocessed_eeg_data"][:, :, :, 20:60].reshape(36, 2, -1)
    same = np.mean([np.corrcoef(x[i, 0], x[i, 1])[0, 1] for i in range(36)])
    diff = np.mean([np.corrcoef(x[i, 0], x[(i + 1) % 36, 1])[0, 1] for i in range(36)])
    assert same > diff


def test_stimuli_are_named_openmoji_concepts_with_variants():
    concepts = openmoji_concepts()
    names = {c.name for c in concepts}
    assert len(concepts) > 1800 and {"dog_face", "pizza", "aerial_tramway"} <= names
    waving = next(c for c in concepts if c.name == "waving_hand")
    assert len(waving.svgs) == 6  # plain + five skin tones = exemplars of one concept
    pizza = next(c for c in concepts if c.name == "pizza")
    a, b = np.asarray(render(pizza, 0, 64, 0)), np.asarray(render(pizza, 1, 64, 0))
    assert a.shape == (64, 64, 3) and not np.array_equal(a, b)  # exemplar 1: moved/rotated/coloured
    assert np.array_equal(b, np.asarray(render(pizza, 1, 64, 0)))  # deterministic


def _levels(n: int, only: str | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal((n, d)) if only in (None, k) else np.zeros((n, d)))
            for k, d in SIZES.items()}


@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.name)
def test_each_level_peaks_at_its_latency(level):
    brain = make_brain(lead_field(), 1, SIZES)
    times = np.arange(-50, 250) / 250.0
    x = evoked(brain, _levels(200, level.name), times, erp_gain=0.0)
    if level.name == "low":  # the offset response also varies with the first low-level component
        x = evoked(brain, {**_levels(200, "low"), "low": np.c_[np.zeros((200, 1)), _levels(200, "low")["low"][:, 1:]]},
                   times, erp_gain=0.0)
    power = x.var(axis=0).mean(axis=0)  # across-image variance: what carries image information
    assert abs(times[power.argmax()] - level.latency) < 0.03


def test_early_visual_information_is_posterior():
    lead = lead_field()
    post = [CH_NAMES_63.index(c) for c in ("O1", "Oz", "O2", "PO7", "PO3", "POz", "PO4", "PO8")]
    front = [CH_NAMES_63.index(c) for c in ("Fp1", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8")]
    ratios = []
    for s in range(1, 6):
        topo = make_brain(lead, s, SIZES).topographies["low"]
        ratios.append((topo[post] ** 2).sum() / (topo[front] ** 2).sum())
    assert np.median(ratios) > 2


def test_subjects_share_part_of_their_sources():
    lead = lead_field()
    same = [make_brain(lead, s, SIZES, shared=1.0).weights["high"] for s in (1, 2)]
    np.testing.assert_allclose(same[0], same[1])
    part = [make_brain(lead, s, SIZES, shared=0.6).weights["high"].ravel() for s in (1, 2)]
    r = np.corrcoef(part[0], part[1])[0, 1]
    assert 0.3 < r < 0.9


def test_noise_spectrum_falls_with_frequency_and_has_alpha():
    from scipy.signal import welch

    lead = lead_field()
    rng = np.random.default_rng(0)
    plain = make_noise(lead, 1, 250.0, alpha=0.0, blink_prob=0.0)
    f, p = welch(plain.sample(40, 500, rng), fs=250.0, nperseg=250, axis=-1)
    p = p.mean(axis=(0, 1))
    band = lambda lo, hi: p[(f >= lo) & (f < hi)].mean()  # noqa: E731
    assert band(2, 6) > band(15, 30) > band(40, 80)
    with_alpha = make_noise(lead, 1, 250.0, alpha=2.0, blink_prob=0.0)
    f, q = welch(with_alpha.sample(40, 500, rng), fs=250.0, nperseg=250, axis=-1)
    q = q.mean(axis=(0, 1))
    peak = f[(f > 6) & (f < 15)][np.argmax(q[(f > 6) & (f < 15)])]
    assert abs(peak - with_alpha.alpha_freq) < 1.5


def test_blinks_are_frontal():
    lead = lead_field()
    noise = make_noise(lead, 1, 250.0)
    fp = [CH_NAMES_63.index(c) for c in ("Fp1", "Fp2")]
    occ = [CH_NAMES_63.index(c) for c in ("O1", "Oz", "O2")]
    assert np.abs(noise.blink_topography[fp]).min() > 3 * np.abs(noise.blink_topography[occ]).max()


def test_ideal_observer_matches_the_closed_form_two_way_case():
    n_chans, n_times, sigma = 4, 20, 1.5
    noise = NoiseModel(np.zeros((n_chans, 1)), np.zeros((n_chans, 1)), np.zeros(n_chans), 100.0,
                       background=0.0, sensor=sigma, alpha=0.0, blink_prob=0.0, gain_sd=0.0)
    rng = np.random.default_rng(0)
    templates = rng.standard_normal((2, n_chans, n_times))
    d = float(np.linalg.norm(templates[0] - templates[1]))
    n = 20000
    trials = templates[np.arange(n) % 2] + noise.sample(n, n_times, rng)
    white = whitener(noise, n_times, slice(0, n_times))
    acc = float((decide(white, templates, trials) == 0).mean())
    assert acc == pytest.approx(two_way_accuracy_white(d, sigma), abs=0.01)


def _silent(n_chans: int = 63, sigma: float = 0.0) -> NoiseModel:
    """White sensor noise σ only (σ = 0: none), unit gains."""
    return NoiseModel(np.zeros((n_chans, 1)), np.zeros((n_chans, 1)), np.zeros(n_chans), 250.0,
                      background=0.0, sensor=sigma, alpha=0.0, blink_prob=0.0, gain_sd=0.0)


def _seen(n: int, n_levels: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Features at ``n_levels`` acuity levels: mid/high differ between levels, low/semantic do not."""
    base = _levels(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return {k: np.stack([v + (0.7 * rng.standard_normal(v.shape) if k in ("mid", "high") else 0)
                         for _ in range(n_levels)]) for k, v in base.items()}


def test_front_end_draws_an_acuity_level_per_trial():
    brain = make_brain(lead_field(), 1, SIZES)
    seen = _seen(30, 3)
    x, drawn = drawn_trials(seen_at(brain, seen, np.arange(30), TIMES), 30, 3, _silent(), 4,
                            np.random.default_rng(0))
    assert x.shape == (30, 4, 63, 300) and drawn.shape == (30, 4)
    counts = np.bincount(drawn.ravel(), minlength=3)
    assert counts.min() > 20  # every level is drawn, about uniformly (120 draws)
    # without noise each trial is its drawn level's response; repetitions of an image differ
    tmpl = level_templates(brain, seen, slice(None), TIMES)
    np.testing.assert_allclose(x, tmpl[drawn, np.arange(30)[:, None]], atol=1e-5)
    differ = [i for i in range(30) if len(set(drawn[i])) > 1]
    assert differ and all(np.abs(x[i] - x[i, :1]).max() > 1e-3 for i in differ)
    assert all(np.abs(x[i] - x[i, :1]).max() == 0 for i in range(30) if i not in differ)


def test_front_end_off_is_the_one_level_path_exactly():
    """With one level nothing is drawn: the per-trial path gives the fixed-signal trials bit for bit."""
    lead = lead_field()
    brain, noise = make_brain(lead, 1, SIZES), make_noise(lead, 1, 250.0)
    feats = _levels(40)
    old = make_trials(evoked(brain, feats, TIMES), noise, 3, np.random.default_rng(5))
    one = {k: v[None] for k, v in feats.items()}
    new, drawn = drawn_trials(seen_at(brain, one, np.arange(40), TIMES), 40, 1, noise, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(new, old)
    assert not drawn.any()


def test_blurred_features_use_the_sharp_pca_basis():
    x = np.random.default_rng(0).standard_normal((50, 30)) @ np.diag(np.linspace(3, 0.1, 30))
    z, fitted = fit_reduce(x, 8)
    np.testing.assert_array_equal(z, reduce(x, 8))  # the sharp levels are unchanged
    np.testing.assert_allclose(fitted(x), z, atol=1e-9)  # the projection of others is the same map


def test_level_counts_are_the_multinomial():
    counts, logp = level_counts(20, 3)
    assert counts.shape == (231, 3) and (counts.sum(1) == 20).all() and len(np.unique(counts, axis=0)) == 231
    assert np.exp(logp).sum() == pytest.approx(1.0)
    one, lp = level_counts(7, 1)
    assert one.tolist() == [[7]] and lp[0] == pytest.approx(0.0)


def test_mixture_observer_is_decide_with_one_level():
    noise = make_noise(lead_field(), 1, 250.0)
    rng = np.random.default_rng(0)
    templates = 0.005 * rng.standard_normal((12, 63, 30))
    x = templates[np.arange(60) % 12] + 0.5 * noise.sample(60, 30, rng)
    white = whitener(noise, 30, slice(0, 30), n_averaged=4)
    ranks = decide(white, templates, x)
    assert 0 < (ranks == 0).mean() < 1  # neither trivial nor hopeless
    np.testing.assert_array_equal(decide_mixture(white, templates[None], x, 4), ranks)


def test_mixture_observer_beats_the_mean_template():
    """Each repetition at one of 3 levels: the mixture observer (Bayes-optimal) is at least as
    accurate as the best single template (the level mean) on the same averaged trials."""
    n_img, n_levels, reps, sigma = 20, 3, 3, 6.0
    rng = np.random.default_rng(1)
    shared = rng.standard_normal((n_img, 2, 20))
    templates = np.stack([shared + 3.0 * rng.standard_normal((n_img, 2, 20)) for _ in range(n_levels)])
    noise = _silent(2, sigma)
    x = np.concatenate([drawn_trials(from_templates(templates), n_img, n_levels, noise, reps, rng)[0].mean(1)
                        for _ in range(60)])
    white = whitener(noise, 20, slice(0, 20), n_averaged=reps)
    mixture = (decide_mixture(white, templates, x, reps) == 0).mean()
    mean = (decide(white, templates.mean(0), x) == 0).mean()
    assert mixture >= mean and 0.5 < mixture < 1, (mixture, mean)


def test_simulate_command_has_the_front_end_switch():
    from test_cli import run

    res = run("simulate", "--help")
    assert res.exit_code == 0 and "--no-front-end" in res.output


def test_whitener_inverts_the_kronecker_covariance():
    lead = lead_field()
    noise = make_noise(lead, 1, 250.0)
    n_t = 30
    white = whitener(noise, n_t, slice(0, n_t))
    a, b = noise.spatial_covariance(), noise.temporal_covariance(n_t)
    cov = np.kron(a, b) + noise.sensor ** 2 * np.eye(63 * n_t)
    x = np.random.default_rng(0).standard_normal((2, 63, n_t))
    explicit = np.einsum("ni,ij,nj->n", x.reshape(2, -1), np.linalg.inv(cov), x.reshape(2, -1))
    np.testing.assert_allclose((white(x) ** 2).sum(1), explicit, rtol=1e-6)


def test_demo_pipeline_writes_metrics_report_and_figures(tmp_path):
    from mindsight.demo import run_demo

    m = run_demo(tmp_path / "run", tmp_path / "data", epochs=2,
                 cache_dir=tmp_path / "cache", preset_name="tiny")
    out = tmp_path / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["ceiling_top1"] == m["ceiling_top1"] and "ridge" in saved["baselines"]
    assert {"top1", "top5", "k_way", "classification", "protocol"} <= set(saved)
    report = (out / "report.md").read_text()
    for fig in ("retrievals.png", "accuracy.png", "training.png", "repetitions.png"):
        assert f"]({fig})" in report and (out / fig).stat().st_size > 5000
    assert "ceiling" in report
    # the blur-prior method next to ATM and ridge, on the simulator's cached acuity views
    assert set(saved["methods"]) == {"atm", "multiblur", "ridge"}
    assert "## Methods on the same data" in report and "foveated-k41" in report
    assert (out / "method-multiblur" / "metrics.json").is_file()
    # the reconstruction step: images, grid, metrics of every condition, and the report section
    rec = json.loads((out / "reconstruction" / "builtin" / "reconstruction.json").read_text())
    assert set(rec["metrics"]) == {"reconstructed", "upper_bound", "chance", "blurry"}
    for cond in ("reconstructed", "upper_bound", "chance"):
        assert isinstance(rec["metrics"][cond]["pixcorr"], float)
        assert len(list((out / "reconstruction" / "builtin" / cond).glob("*.png"))) == rec["n_images"]
    assert rec["prior"]["parameters"] > 0 and rec["lowlevel"]["alpha"] > 0
    assert "## Reconstruction" in report and "grid.png" in report
    assert (out / "reconstruction" / "builtin" / "grid.png").stat().st_size > 5000
    # the command line, without prior and low-level pathway, on 3 items; and a missing weight file
    from test_cli import run, run_main

    res = run("reconstruct", out, "--no-prior", "--no-lowlevel", "--max-images", 3, "--steps", 4,
              "--out", tmp_path / "rc", "--no-progress")
    assert res.exit_code == 0, res.output
    rc = json.loads((tmp_path / "rc" / "reconstruction.json").read_text())
    assert rc["n_images"] == 3 and rc["prior"] is None and "blurry" not in rc["metrics"]
    assert "reconstructed" in res.output
    assert run_main("reconstruct", out, "--weights", tmp_path / "none.safetensors") == 2


def test_temporal_analysis_finds_information_after_onset_only(tiny, tmp_path):
    """Ridge on the official layout (-0.2..0.79 s): masked windows before the stimulus are at
    chance level (within the permutation band), and the best sliding window starts after 0."""
    from mindsight.analysis import analyze_temporal
    from mindsight.config import RunConfig
    from mindsight.train import train_run

    root, _, cache = tiny
    cfg = RunConfig.from_dict({"data": {"eeg": str(root / "preprocessed_data"), "images": str(root / "images"),
                                        "subjects": [1], "val_fraction": 0.2},
                               "model": {"encoder": "ridge"}, "train": {"seeds": [0]}})
    train_run(cfg, tmp_path / "run", cache_dir=cache)
    r = analyze_temporal(tmp_path / "run", n_permutations=100, cache_dir=cache)
    saved = json.loads((tmp_path / "run" / "analysis" / "temporal.json").read_text())
    assert saved["mode"].startswith("evaluation only") and {"start", "end", "top1"} <= set(saved["sliding"][0])
    before = [w for w in r["sliding"] if w["end"] <= 0.0]
    assert before and all(w["top1"] <= w["null95"] for w in before)
    assert r["peak"]["start"] >= 0.0 and r["peak"]["top1"] > r["chance_top1"]
    assert r["growing"][0]["start"] == 0.0
    assert (tmp_path / "run" / "analysis" / "temporal.png").stat().st_size > 1000
    retrained = analyze_temporal(tmp_path / "run", mode="retrain", length=0.2, stride=0.2, tmin=0.0,
                                 n_permutations=20, cache_dir=cache)
    assert retrained["mode"].startswith("retrained per window (ridge")
    assert [w["start"] for w in retrained["sliding"]] == [0.0, 0.2, 0.4]


def test_spatial_analysis_finds_the_occipital_region_beats_the_frontal_one(tmp_path):
    """The simulator's visual sources are posterior: per-region ridge models (retrain) decode
    more from occipital than from frontal channels; the JSON lists every region and all channels,
    and the importance map covers every channel."""
    from mindsight.analysis import analyze_spatial
    from mindsight.config import RunConfig
    from mindsight.simulate import SimConfig
    from mindsight.train import train_run

    root, cache = tmp_path / "sim", tmp_path / "cache"
    simulate(root, SimConfig(n_train_concepts=60, exemplars=3, n_test_concepts=30, n_reps_test=10,
                             subjects=[1], image_size=64, layouts=["nice-atm"], dtype="float32",
                             observer_draws=0), cache_dir=cache)
    cfg = RunConfig.from_dict({"data": {"eeg": str(root / "Preprocessed_data_250Hz"),
                                        "images": str(root / "images"), "subjects": [1], "val_fraction": 0.2},
                               "model": {"encoder": "ridge"}, "train": {"seeds": [0]}})
    train_run(cfg, tmp_path / "run", cache_dir=cache)
    r = analyze_spatial(tmp_path / "run", mode="retrain", n_permutations=50, cache_dir=cache)
    saved = json.loads((tmp_path / "run" / "analysis" / "spatial.json").read_text())
    assert saved["mode"].startswith("retrained per region (ridge")
    assert list(saved["regions"]) == ["frontal", "temporal", "central", "parietal", "occipital", "all"]
    assert saved["regions"]["all"]["n_channels"] == 63 and len(saved["channel_importance"]) == 63
    reg = r["regions"]
    assert (reg["occipital"]["top1"], reg["occipital"]["top5"]) > (reg["frontal"]["top1"], reg["frontal"]["top5"])
    assert (tmp_path / "run" / "analysis" / "spatial.png").stat().st_size > 5000
    masked = analyze_spatial(tmp_path / "run", n_permutations=20, cache_dir=cache)
    assert masked["mode"].startswith("evaluation only")
    assert masked["regions"]["all"]["top1"] == pytest.approx(reg["all"]["top1"])


@pytest.fixture(scope="module")
def meg_tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim-meg")
    cache = tmp_path_factory.mktemp("sim-meg-cache")
    meta = simulate(root, preset("meg-tiny"), cache_dir=cache)
    return root, meta, cache


def test_meg_mode_writes_both_things_meg_layouts_with_the_things_meg_design(meg_tiny):
    from mindsight.io.datasets import read_images, read_recording
    from mindsight.sensors import ctf_271

    root, meta, cache = meg_tiny
    official, atm = root / "derivatives" / "preprocessed", root / "THINGS-MEG-atm"
    assert (root / "sourcedata" / "sample_attributes_P1.csv").is_file()
    small = read_images(official, root / "images")
    train = read_recording(official, 1, "train", small, cache_dir=cache)
    test = read_recording(official, 1, "test", small, cache_dir=cache)
    # 12 training concepts × 3 exemplars, each seen once; 8 test images × 4 sessions
    assert train.data.shape == (36, 271, 281) and train.sfreq == 200.0 and train.ch_names == ctf_271()
    assert np.isclose(train.tmin, -0.1) and np.isclose(train.tmax, 1.3)
    assert test.n_images == 8 and test.n_trials == 32 and sorted(np.unique(test.trials.session)) == [0, 1, 2, 3]
    large = read_images(official, root / "images", test_set="large")
    big = read_recording(official, 1, "test", large, test_set="large", cache_dir=cache)
    assert big.n_trials == 24 and big.n_images == 24 and big.n_concepts == 8
    assert set(large["test"].concept_names) == set(small["test"].concept_names)
    assert not set(large["test"].concept_names) & set(small["train"].concept_names)
    # ATM's pickles hold the same single trials, cropped to 0..1 s
    a_train = read_recording(atm, 1, "train", read_images(atm, root / "images"), cache_dir=cache)
    assert a_train.data.shape == (36, 271, 201) and a_train.tmin == 0.0
    by_image = np.argsort(train.trials.image)  # the official epochs are in presentation order
    np.testing.assert_array_equal(a_train.trials.image, np.arange(36))
    np.testing.assert_allclose(a_train.data, np.asarray(train.data)[by_image][:, :, 20:221], rtol=1e-6)
    assert meta["config"]["modality"] == "meg" and meta["ceiling_top1"] > 0.5


def test_meg_evoked_field_is_strongest_over_posterior_sensors(meg_tiny):
    """The visual sources are posterior: averaged test responses have more power over occipital
    than over frontal sensors after onset, and none of it before."""
    from mindsight.io.datasets import read_images, read_recording
    from mindsight.sensors import regions

    root, _, cache = meg_tiny
    official = root / "derivatives" / "preprocessed"
    test = read_recording(official, 1, "test", read_images(official, root / "images"), cache_dir=cache)
    evoked = test.average_repetitions().get_data().mean(0)  # grand average over images
    reg = regions(test.ch_names)
    idx = {c: i for i, c in enumerate(test.ch_names)}
    post = test.times > 0.05
    power = {r: float((evoked[[idx[c] for c in chans]][:, post] ** 2).mean()) for r, chans in reg.items()}
    assert power["occipital"] > power["frontal"]


def test_brain_module_learns_from_built_in_meg_single_trials(tmp_path):
    """Benchetrit et al.'s brain module (spatial attention over CTF positions, subject layer,
    dilated convolutions, CLIP + MSE heads), trained on simulated THINGS-MEG single trials read
    from ATM's layout, retrieves unseen test concepts well above chance."""
    from mindsight.config import RunConfig
    from mindsight.evaluate import evaluate_run
    from mindsight.simulate import SimConfig
    from mindsight.train import train_run

    root, cache = tmp_path / "sim", tmp_path / "cache"
    simulate(root, SimConfig(n_train_concepts=120, exemplars=3, n_test_concepts=20, n_reps_train=1,
                             n_reps_test=6, subjects=[1], image_size=64, modality="meg",
                             layouts=["meg-atm"], dtype="float32", noise=0.3, observer_draws=0), cache_dir=cache)
    cfg = RunConfig.from_dict({
        "data": {"eeg": str(root / "THINGS-MEG-atm"), "images": str(root / "images"), "subjects": [1],
                 "val_fraction": 0.2, "train_trials": "single", "tmax": 0.6},
        "model": {"encoder": "brainmodule",
                  "params": {"hidden": 32, "depth": 2, "features": 64, "n_virtual_channels": 64}},
        "train": {"epochs": 20, "batch_size": 32, "lr": 1e-3, "text_weight": 0.0, "clip_weight": 0.75}})
    train_run(cfg, tmp_path / "run", cache_dir=cache)
    m = evaluate_run(tmp_path / "run", cache_dir=cache, single_trial=False)
    assert m["n_way"] == 20 and m["protocol"]["dataset"] == "THINGS-MEG"
    assert m["top1"] >= 4 * m["chance_top1"], m["top1"]
