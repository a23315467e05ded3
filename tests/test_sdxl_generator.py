"""SDXL / SDXL-Turbo + IP-Adapter generators, on tiny random-weight pipelines (CPU, offline).

The tiny pipelines are the same diffusers classes (StableDiffusionXLPipeline / Img2ImgPipeline,
UNet2DConditionModel with text_time embeddings, two CLIP text encoders, AutoencoderKL) with an
IP-Adapter loaded through diffusers' own ``load_ip_adapter``, so the ``ip_adapter_image_embeds``
code path is the real one.
"""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F

from mindsight.errors import WeightsUnavailableError
from mindsight.generate.base import GENERATORS, generator_names, load_generator, weights_options

DIM = 32  # the tiny IP-Adapter's embedding size
SIZE = 64  # the tiny generators' image size


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest)


@pytest.fixture(scope="module")
def sdxl():
    return load_generator("sdxl-ip-adapter", config="tiny")


@pytest.fixture(scope="module")
def turbo():
    return load_generator("sdxl-turbo-ip-adapter", config="tiny")


def _emb(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


def test_registered():
    names = generator_names()
    for name in ("sdxl-ip-adapter", "sdxl-turbo-ip-adapter"):
        assert name in names
        cls = GENERATORS.get(name)
        assert cls.offline is False and cls.name == name and GENERATORS.entry(name).description
        # `--weights` names the SDXL pipeline (a hub id or a local folder)
        assert cls.weights_option == "model_id"
        assert weights_options(name, "/models/sdxl") == {"model_id": "/models/sdxl"}


def test_shape_range_and_describe(sdxl, turbo):
    for gen in (sdxl, turbo):
        x = gen.generate(_emb(3, 0), seed=0)
        assert x.shape == (3, 3, SIZE, SIZE) and x.dtype == torch.float32
        assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.std()) > 0
        d = json.loads(json.dumps(gen.describe()))
        assert d["embedding_model"] == "clip-vit-h-14" and d["embedding_dim"] == DIM
        assert d["latent_shape"] == list(gen.autoencoder.latent_shape)
    assert (sdxl.steps, sdxl.guidance_scale) == (2, 5.0)
    assert turbo.guidance_scale == 0.0
    assert sdxl.generate(_emb(0, 0)).shape == (0, 3, SIZE, SIZE)


def test_seeds(sdxl):
    e = _emb(3, 1)
    a = sdxl.generate(e, seed=7)
    assert torch.equal(a, sdxl.generate(e, seed=7))
    assert _diff(a, sdxl.generate(e, seed=8)) > 1e-3
    # each image depends on its own embedding only (diffusers would share embeddings across a
    # prompt batch): changing the others leaves it unchanged
    other = torch.cat([e[:1], _emb(2, 11)])
    assert torch.equal(a[0], sdxl.generate(other, seed=7)[0])
    assert torch.equal(a[0], sdxl.generate(e[:1], seed=7)[0])


def test_embedding_conditions_the_images(sdxl, turbo):
    for gen in (sdxl, turbo):
        a, b = gen.generate(_emb(2, 2), seed=0), gen.generate(_emb(2, 3), seed=0)
        assert _diff(a, b) > 1e-3
    # ... through the IP-Adapter: at scale 0 the embedding no longer matters
    off = load_generator("sdxl-ip-adapter", config="tiny", ip_adapter_scale=0.0)
    a, b = off.generate(_emb(2, 2), seed=0), off.generate(_emb(2, 3), seed=0)
    assert torch.allclose(a, b, atol=1e-5)


def test_embedding_norm(sdxl):
    e = _emb(2, 12)
    try:
        sdxl.embedding_norm = 3.0  # every embedding rescaled to this L2 norm first
        assert torch.allclose(sdxl.generate(e, seed=0), sdxl.generate(5 * e, seed=0), atol=1e-4)
    finally:
        sdxl.embedding_norm = None
    assert _diff(sdxl.generate(e, seed=0), sdxl.generate(5 * e, seed=0)) > 1e-3


def test_ip_adapter_embeds_format(sdxl, turbo):
    e = _emb(2, 4)
    with_cfg = sdxl._ip_embeds(e, sdxl._uses_cfg(5.0))
    assert len(with_cfg) == 1 and with_cfg[0].shape == (4, 1, DIM)
    assert torch.equal(with_cfg[0][:2], torch.zeros(2, 1, DIM))  # unconditional half first
    assert torch.equal(with_cfg[0][2:, 0], e)
    assert not turbo._uses_cfg(turbo.guidance_scale) and not sdxl._uses_cfg(1.0)
    without = turbo._ip_embeds(e[:1], False)
    assert len(without) == 1 and torch.equal(without[0], e[:1, None])
    # guidance off on the base model: the embeds lose their unconditional half
    x = sdxl.generate(e, guidance_scale=1.0, steps=1)
    assert x.shape == (2, 3, SIZE, SIZE)


def test_captions_and_bad_input(sdxl):
    e = _emb(2, 5)
    a = sdxl.generate(e, captions=["a red apple", "a dog"], seed=0)
    b = sdxl.generate(e, captions=["a blue car", "a house"], seed=0)
    assert _diff(a, b) > 1e-4
    with pytest.raises(ValueError, match="captions"):
        sdxl.generate(e, captions=["only one"])
    with pytest.raises(ValueError, match=f"\\(n, {DIM}\\)"):
        sdxl.generate(torch.zeros(2, DIM + 1))
    with pytest.raises(ValueError, match="init_images"):
        sdxl.generate(e, init_images=torch.rand(3, 3, SIZE, SIZE))


def test_img2img(sdxl, turbo):
    e = _emb(2, 6)
    init = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    resized = F.interpolate(init, size=(SIZE, SIZE), mode="bicubic", antialias=True).clamp(0, 1)
    assert torch.allclose(sdxl.generate(e, init_images=init, strength=0.0), resized)
    # what the (random) VAE can reproduce of the initial images
    target = sdxl.autoencoder.decode(sdxl.autoencoder.encode(resized))
    for gen in (sdxl, turbo):
        near = gen.generate(e, init_images=init, strength=0.1, seed=0)
        mid = gen.generate(e, init_images=init, strength=0.6, steps=10, seed=0)
        far = gen.generate(e, init_images=init, strength=1.0, seed=0)
        assert near.shape == (2, 3, SIZE, SIZE) and 0 <= float(near.min()) <= float(near.max()) <= 1
        assert _diff(near, target) < 0.5 * _diff(far, target)
        assert _diff(near, target) < _diff(mid, target) < _diff(far, target) + 0.02
        assert torch.equal(far, gen.generate(e, seed=0))  # strength 1 ignores init_images


def test_autoencoder(sdxl):
    ae = sdxl.autoencoder
    assert ae.image_size == SIZE and ae.latent_shape == (4, SIZE // 8, SIZE // 8)
    z = ae.encode(torch.rand(3, 3, SIZE, SIZE))
    assert z.shape == (3, *ae.latent_shape)
    assert 0.2 < float(z.std()) < 5  # scaled by vae.config.scaling_factor
    x = ae.decode(z)
    assert x.shape == (3, 3, SIZE, SIZE) and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert ae.encode(torch.rand(2, 3, 100, 80)).shape == (2, *ae.latent_shape)  # resized
    with pytest.raises(ValueError, match="latents"):
        ae.decode(torch.zeros(1, 4, 3, 3))
    small = load_generator("sdxl-ip-adapter", config="tiny", lowlevel_size=32).autoencoder
    assert small.image_size == 32 and small.latent_shape == (4, 4, 4)
    with pytest.raises(ValueError, match="multiple"):
        load_generator("sdxl-ip-adapter", config="tiny", lowlevel_size=36)


def test_parameter_counts(sdxl):
    counts = sdxl.parameter_counts()
    assert set(counts) == {"unet", "vae", "text_encoder", "text_encoder_2", "ip_adapter"}
    assert all(v > 0 for v in counts.values())
    pipe = sdxl.pipe
    distinct = {id(p): p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder,
                                           pipe.text_encoder_2) for p in m.parameters()}
    assert sum(counts.values()) == sum(distinct.values())  # nothing counted twice
    # the IP-Adapter: image projection (d → 4 tokens) + to_k_ip/to_v_ip per cross-attention
    assert counts["ip_adapter"] > DIM * 4 * pipe.unet.config.cross_attention_dim


def _cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "model_index.json"), str)


@pytest.mark.parametrize("name,model_id", [
    ("sdxl-ip-adapter", "stabilityai/stable-diffusion-xl-base-1.0"),
    ("sdxl-turbo-ip-adapter", "stabilityai/sdxl-turbo"),
])
def test_missing_weights_offline(name, model_id, sdxl):  # sdxl: diffusers already imported
    if _cached(model_id):
        pytest.skip(f"{model_id} is in the local Hugging Face cache")
    t = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match=model_id) as err:
        load_generator(name)
    assert time.perf_counter() - t < 10
    assert "hf download" in str(err.value) and "model_id" in str(err.value)


def test_local_paths(tmp_path, sdxl):
    """model_id and ip_adapter as local paths run the real loading code (from_pretrained +
    load_ip_adapter from a .safetensors file shaped like h94/IP-Adapter's)."""
    from safetensors.torch import save_file

    from mindsight.generate.generators.sdxl import TINY, _random_ip_adapter_state, _tiny_pipeline

    with pytest.raises(WeightsUnavailableError, match="nowhere"):
        load_generator("sdxl-ip-adapter", model_id=str(tmp_path / "nowhere"))

    pipe = _tiny_pipeline(dict(TINY))
    state = _random_ip_adapter_state(pipe.unet, DIM)
    pipe.unload_ip_adapter()
    pipe.save_pretrained(tmp_path / "sdxl")
    save_file({f"{part}.{k}": v.contiguous() for part, sd in state.items() for k, v in sd.items()},
              tmp_path / "ip-adapter.safetensors")
    gen = load_generator("sdxl-ip-adapter", model_id=str(tmp_path / "sdxl"),
                         ip_adapter=str(tmp_path / "ip-adapter.safetensors"),
                         image_size=SIZE, lowlevel_size=SIZE, steps=2)
    assert gen.embedding_dim == DIM and gen.dtype == torch.float32
    assert gen.parameter_counts() == sdxl.parameter_counts()
    x = gen.generate(_emb(2, 9), seed=0)
    assert x.shape == (2, 3, SIZE, SIZE) and torch.equal(x, gen.generate(_emb(2, 9), seed=0))

    if not isinstance(_ip_cached(), str):  # the IP-Adapter itself missing offline
        with pytest.raises(WeightsUnavailableError, match="ip-adapter_sdxl_vit-h.safetensors"):
            load_generator("sdxl-ip-adapter", model_id=str(tmp_path / "sdxl"))


def _ip_cached():
    from huggingface_hub import try_to_load_from_cache

    return try_to_load_from_cache("h94/IP-Adapter", "sdxl_models/ip-adapter_sdxl_vit-h.safetensors")
