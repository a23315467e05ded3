"""Reconstruction parts: scheduler, diffusion prior, low-level decoder, built-in generator, pipeline."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mindsight.errors import DataFormatError, MissingFileError
from mindsight.generate.base import generator_names, load_generator
from mindsight.generate.lowlevel import LowLevelDecoder
from mindsight.generate.networks import BuiltinConfig, ConvAutoencoder, LatentUNet
from mindsight.generate.pipeline import ReconstructionPipeline
from mindsight.generate.prior import DiffusionPrior, PriorConfig
from mindsight.generate.schedule import CosineSchedule

TINY = BuiltinConfig(embedding_dim=16, ae_channels=[8, 16], unet_channels=[16, 32], attention_levels=[1],
                     cond_dim=32)


def _top1(pred: torch.Tensor, truth: torch.Tensor) -> float:
    sim = F.normalize(pred, dim=1) @ F.normalize(truth, dim=1).T
    return float((sim.argmax(1) == torch.arange(len(truth))).float().mean())


def test_ddim_with_an_exact_denoiser_returns_the_clean_sample():
    """If the model predicts the true v for a known x0, DDIM lands exactly on x0 — from noise
    and from any img2img starting point."""
    sched = CosineSchedule()
    x0 = torch.randn(3, 5)

    def oracle(x, t, cond, use):
        ab = sched.alpha_bar[t].view(-1, 1)
        return (ab.sqrt() * x - x0.repeat(len(x) // 3, 1)) / (1 - ab).sqrt()

    out = sched.sample(oracle, torch.zeros(3, 1), (3, 5), steps=7)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)
    out = sched.sample(oracle, torch.zeros(3, 1), (3, 5), steps=4, guidance_scale=2.0,
                       init=torch.zeros(3, 5), strength=0.5)
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=1e-4)


def test_img2img_strength_keeps_the_least_noisy_steps():
    sched = CosineSchedule(1000)
    full = sched.timesteps(10)
    assert full[0] == 999 and full[-1] == 0 and len(full) == 10
    half = sched.timesteps(10, strength=0.5)
    assert half == [t for t in full if t <= 499.5] and len(half) == 5
    assert sched.timesteps(10, strength=0.0) == [0]
    init = torch.rand(2, 3)
    same = sched.sample(lambda x, t, c, u: torch.zeros_like(x), torch.zeros(2, 1), (2, 3), init=init,
                        strength=0.0, steps=5)
    # strength 0 means a single step at t = 0, where ᾱ ≈ 1: the init comes back unchanged
    torch.testing.assert_close(same, init, atol=2e-2, rtol=0)
    with pytest.raises(ValueError, match="strength"):
        sched.timesteps(10, strength=1.5)


def test_prior_learns_the_conditional_distribution_and_guidance_matters():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(16, 32, generator=g)
    cond = torch.randn(600, 16, generator=g)
    target = torch.tanh(cond @ mix) + 0.1 * torch.randn(600, 32, generator=g)
    val_c = torch.randn(100, 16, generator=g)
    val_t = torch.tanh(val_c @ mix)
    prior = DiffusionPrior(32, 16, PriorConfig(widths=[128, 64], epochs=40, batch_size=64))
    info = prior.fit(cond, target, val_c[:50], val_t[:50])
    assert info["best_epoch"] >= 0 and info["parameters"] == prior.n_parameters()
    sampled = prior.sample(val_c[50:], steps=20)
    assert _top1(sampled, val_t[50:]) > 0.6  # 50-way, chance 0.02
    unconditional = prior.sample(val_c[50:], steps=20, guidance_scale=0.0)
    assert _top1(unconditional, val_t[50:]) < 0.2
    torch.testing.assert_close(prior.sample(val_c[50:], steps=5, seed=3), prior.sample(val_c[50:], steps=5, seed=3))
    with pytest.raises(DataFormatError, match="16"):
        prior.sample(torch.zeros(2, 7))


def test_prior_save_load_roundtrip(tmp_path):
    prior = DiffusionPrior(8, 4, PriorConfig(widths=[16], epochs=2, batch_size=8))
    prior.fit(torch.randn(20, 4), torch.randn(20, 8), torch.randn(6, 4), torch.randn(6, 8))
    prior.save(tmp_path / "p.safetensors", {"info": {"a": 1}})
    again, meta = DiffusionPrior.load(tmp_path / "p.safetensors")
    assert meta["info"] == {"a": 1}
    c = torch.randn(3, 4)
    torch.testing.assert_close(prior.sample(c, steps=3), again.sample(c, steps=3))


def test_lowlevel_decoder_recovers_latents_from_a_linear_brain():
    g = torch.Generator().manual_seed(0)
    shape = (2, 4, 4)
    mix = torch.randn(32, 6 * 10, generator=g)

    def brain(z):
        return (z.flatten(1) @ mix).view(len(z), 6, 10)

    z, z_val, z_test = (torch.randn(n, *shape, generator=g) for n in (300, 60, 60))
    noise = lambda n: 0.5 * torch.randn(n, 6, 10, generator=g)  # noqa: E731
    dec = LowLevelDecoder(6, 10, 100.0, shape, decim=1)
    info = dec.fit(brain(z) + noise(300), z, brain(z_val) + noise(60), z_val)
    assert info["val_latent_corr"] > 0.8 and info["alpha"] > 0
    pred = dec.predict(brain(z_test) + noise(60))
    assert pred.shape == (60, *shape)
    r = np.corrcoef(pred.flatten().numpy(), z_test.flatten().numpy())[0, 1]
    assert r > 0.8
    post = dec.predict(brain(z_test) + noise(60), postprocess=True).flatten(1)
    torch.testing.assert_close(post.mean(0), dec.register["mean"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(post.std(0), dec.register["std"], atol=1e-4, rtol=1e-4)
    with pytest.raises(DataFormatError, match=r"\(n, 6, 10\)"):
        dec.predict(torch.zeros(2, 5, 10))


def _tiny_generator(device="cpu"):
    from mindsight.generate.generators.builtin import BuiltinGenerator

    torch.manual_seed(0)
    return BuiltinGenerator(TINY, ConvAutoencoder(TINY), LatentUNet(TINY), device=device)


def test_builtin_networks_shapes_and_seeded_sampling():
    gen = _tiny_generator()
    assert gen.autoencoder.latent_shape == (4, 16, 16)
    z = gen.autoencoder.encode(torch.rand(2, 3, 50, 50))  # any input size is resized
    assert z.shape == (2, 4, 16, 16)
    assert gen.autoencoder.decode(z).shape == (2, 3, 64, 64)
    emb = torch.randn(3, 16)
    a = gen.generate(emb, steps=3, seed=1)
    assert a.shape == (3, 3, 64, 64) and 0 <= float(a.min()) and float(a.max()) <= 1
    torch.testing.assert_close(a, gen.generate(emb, steps=3, seed=1))
    assert not torch.equal(a, gen.generate(emb, steps=3, seed=2))
    with pytest.raises(DataFormatError, match="16-d"):
        gen.generate(torch.randn(3, 12))
    assert set(gen.parameter_counts()) == {"autoencoder", "unet"}


def test_pipeline_composes_prior_lowlevel_and_generator():
    gen = _tiny_generator()
    prior = DiffusionPrior(16, 8, PriorConfig(widths=[16], epochs=1, batch_size=8))
    prior.fit(torch.randn(20, 8), torch.randn(20, 16), torch.randn(4, 8), torch.randn(4, 16))
    low = LowLevelDecoder(3, 5, 50.0, gen.autoencoder.latent_shape, decim=1)
    low.fit(torch.randn(30, 3, 5), torch.randn(30, 4, 16, 16), torch.randn(6, 3, 5), torch.randn(6, 4, 16, 16))
    pipe = ReconstructionPipeline(gen, prior, low, strength=0.6, steps=3)
    out = pipe(torch.randn(2, 8), torch.randn(2, 3, 5))
    assert out.images.shape == (2, 3, 64, 64) and out.blurry.shape == (2, 3, 64, 64)
    assert out.embeddings.shape == (2, 16)
    with pytest.raises(DataFormatError, match="epochs"):
        pipe(torch.randn(2, 8))
    bad = DiffusionPrior(10, 8)
    with pytest.raises(DataFormatError, match="10-d"):
        ReconstructionPipeline(gen, bad)


def test_generator_registry_and_missing_weights(tmp_path):
    assert "builtin" in generator_names()
    with pytest.raises(MissingFileError, match="train-generator"):
        load_generator("builtin", weights=tmp_path / "nope.safetensors")


def test_generators_declare_what_they_need():
    """Each registered generator says whether it is offline and which load() option a weight
    path fills; `--weights` goes there (no special case by name), and a class that leaves a
    declaration out, or names an option load() does not take, is refused at registration."""
    from mindsight.errors import ContractError
    from mindsight.generate.base import GENERATORS, Generator, generator_class, weights_options

    builtin = generator_class("builtin")
    assert builtin.offline is True and builtin.weights_option == "weights"
    assert weights_options("builtin", "/w/gen.safetensors") == {"weights": "/w/gen.safetensors"}
    assert weights_options("builtin", None) == {}
    assert all(generator_class(n).weights_option for n in generator_names())

    class Partial(Generator):
        name, offline, finetunes = "partial", True, False

        @classmethod
        def load(cls, device="cpu", checkpoint=None):
            return cls()

        def generate(self, embeddings, **kwargs):
            return embeddings

        def modules(self):
            return {}

    with pytest.raises(ContractError, match="does not declare weights_option"):
        GENERATORS.register("partial")(Partial)
    Partial.weights_option = "weights"
    with pytest.raises(ContractError, match="'weights', which is not an option of its load"):
        GENERATORS.register("partial")(Partial)
    Partial.weights_option = "checkpoint"
    GENERATORS.register("partial")(Partial)
    try:
        assert weights_options("partial", "a.pt") == {"checkpoint": "a.pt"}
        assert isinstance(load_generator("partial", checkpoint="a.pt"), Partial)
    finally:
        GENERATORS._entries.pop("partial")
    assert "partial" not in generator_names()


def test_training_the_builtin_generator_reduces_its_losses_and_resumes(tmp_path, caplog):
    from mindsight.generate.generators.builtin import load_builtin
    from mindsight.generate.train_builtin import GeneratorTrainConfig, train_builtin

    cfg = GeneratorTrainConfig(model=TINY, max_concepts=6, exemplars=2, render_size=64, ae_steps=60,
                               diffusion_steps=30, batch_size=8, lr=3e-3, checkpoint_every=30)
    cfg.model.embedding_dim = 1280
    path = train_builtin(tmp_path, cfg)
    gen = load_builtin(path)
    record = gen.describe()["training"]
    assert record["n_images"] == 12 and record["n_concepts"] == 6
    _, meta = __import__("mindsight.train.checkpoint", fromlist=["x"]).load_tensors(tmp_path / "last.safetensors")
    ae_losses = meta["state"]["ae_losses"]
    assert np.mean(ae_losses[-10:]) < 0.7 * np.mean(ae_losses[:10])
    # a finished run resumes at its last step and only re-exports
    with caplog.at_level(logging.INFO, logger="mindsight"):
        train_builtin(tmp_path, cfg)
    assert "resuming generator training at step 90" in caplog.text
    cfg.ae_steps = 61
    with pytest.raises(ValueError, match="different training config"):
        train_builtin(tmp_path, cfg)


def test_shipped_generator_draws_recognisable_pictures_from_true_embeddings(tmp_path):
    """The upper bound: given the true EfficientNet-Lite0 embedding of a held-out (reserved)
    concept's picture, the shipped generator's output is identified among 20 candidates'
    pictures far above chance (two-way identification on pixel correlations)."""
    from mindsight.embed import load_image_embedder
    from mindsight.generate.reconstruct import load_images
    from mindsight.simulate.stimuli import is_reserved, openmoji_concepts, render

    gen = load_generator("builtin")
    assert gen.describe()["training"]["n_concepts"] > 1000
    held_out = [c for c in openmoji_concepts() if is_reserved(c.name)][:20]
    pics = [render(c, 0, 128, 0) for c in held_out]
    emb = torch.from_numpy(load_image_embedder("efficientnet-lite0").embed_images(pics))
    out = gen.generate(emb, steps=15, seed=0)
    seen = torch.stack([torch.from_numpy(np.array(p.resize((64, 64)))).permute(2, 0, 1).float() / 255 for p in pics])
    from mindsight.evaluate.reconstruction import two_way_identification

    score = two_way_identification(seen.flatten(1), out.flatten(1))
    assert score > 0.75, score
    # reconstruct scores the seen pictures through load_images (from their files): it reads
    # back the same pictures that were embedded above
    from mindsight.evaluate.reconstruction import resize_square

    for i, pic in enumerate(pics[:4]):
        pic.save(tmp_path / f"{i}.png")
    loaded = resize_square(load_images([tmp_path / f"{i}.png" for i in range(4)]), 64)
    assert loaded.shape == (4, 3, 64, 64)
    assert float((loaded - seen[:4]).abs().mean()) < 0.03


def test_reconstruct_refuses_a_run_without_a_trained_encoder(tmp_path):
    from mindsight.config import RunConfig
    from mindsight.generate.reconstruct import reconstruct_run

    with pytest.raises(MissingFileError, match="train one first"):
        reconstruct_run(tmp_path)
    RunConfig().save(tmp_path / "config.yaml")
    (tmp_path / "folds" / "sub-01_seed-0").mkdir(parents=True)
    (tmp_path / "folds" / "sub-01_seed-0" / "fold.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(MissingFileError, match="no trained encoder"):
        reconstruct_run(tmp_path)


def test_a_prior_fit_depends_on_its_seed_not_on_earlier_random_draws():
    """The initial weights come from the fit's seed: a job that drew random numbers before
    (another conditioning, an upper bound) fits the same prior."""
    g = torch.Generator().manual_seed(0)
    cond, target = torch.randn(64, 4, generator=g), torch.randn(64, 8, generator=g)
    states = []
    for burn in (0, 1000):
        torch.rand(burn)  # whatever ran before the fit
        prior = DiffusionPrior(8, 4, PriorConfig(widths=[16], epochs=2, batch_size=16))
        prior.fit(cond[:48], target[:48], cond[48:], target[48:], seed=3)
        states.append(prior.net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
