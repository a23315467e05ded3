"""``builtin-var``: its training (resumable), the generator contract's ``finetunes``, AVDE's stage 2,
and ``mindsight reconstruct --generator builtin-var`` on a tiny simulated run."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mindsight.errors import ConfigError, ContractError, DataFormatError, MissingFileError
from mindsight.generate.base import GENERATORS, Generator, generator_class, load_generator
from mindsight.generate.finetune import FinetuneConfig, condition_parameter_names, finetune_var
from mindsight.generate.train_var import VarTrainConfig, train_var
from mindsight.generate.var import MultiScaleVQVAE, TokenizerConfig, VARConfig, VARTransformer
from mindsight.train.checkpoint import load_tensors

pytestmark = pytest.mark.usefixtures("one_thread")

PN = (1, 2, 4)  # 16 px pictures ↔ 4 × 4 latents, 21 tokens


def tiny_tokenizer(z: int = 8, vocab: int = 64) -> TokenizerConfig:
    return TokenizerConfig(vocab_size=vocab, z_channels=z, ch=32, ch_mult=(1, 1, 1), num_res_blocks=1,
                           patch_nums=PN, image_size=16, share_quant_resi=2)


def tiny_transformer(cond_dim: int = 1280, z: int = 8, vocab: int = 64) -> VARConfig:
    return VARConfig(depth=1, embed_dim=32, num_heads=2, vocab_size=vocab, z_channels=z, patch_nums=PN,
                     cond_dim=cond_dim)


def tiny_config(**kw) -> VarTrainConfig:
    settings = {"tokenizer": tiny_tokenizer(), "transformer": tiny_transformer(), "max_concepts": 4, "exemplars": 2,
                "render_size": 64, "tokenizer_steps": 6, "var_steps": 6, "tokenizer_batch_size": 4,
                "var_batch_size": 4, "checkpoint_every": 4}
    return VarTrainConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """A finished tiny training run (8 pictures of 4 concepts): its work folder and weight file."""
    work = tmp_path_factory.mktemp("var")
    return work, train_var(work, tiny_config())


def test_training_writes_a_loadable_file_and_resumes_to_the_same_result(tiny_weights, tmp_path, caplog):
    work, path = tiny_weights
    assert path.name == "builtin-var.safetensors"
    tensors, meta = load_tensors(path)
    assert all(v.dtype == torch.float16 for k, v in tensors.items() if k.endswith(".weight"))
    assert meta["training"] == tiny_config().to_dict() and meta["record"]["n_images"] == 8
    assert meta["record"]["n_concepts"] == 4 and meta["record"]["final_var_loss"] > 0
    gen = load_generator("builtin-var", weights=path)
    assert gen.embedding_model == "efficientnet-lite0" and gen.embedding_dim == 1280
    assert gen.autoencoder.latent_shape == (8, 4, 4) and gen.image_size == 16
    # interrupted inside stage b (after the tokenizer), then resumed: the same weights
    shutil.copy(work / "data.safetensors", tmp_path / "data.safetensors")  # the rendered set, as cached
    assert train_var(tmp_path, tiny_config(), stop_after=9).name == "last.safetensors"
    assert not (tmp_path / "builtin-var.safetensors").exists()
    with caplog.at_level(logging.INFO, logger="mindsight"):
        resumed = train_var(tmp_path, tiny_config())
    assert "resuming builtin-var training at step 9" in caplog.text
    again, _ = load_tensors(resumed)
    assert again.keys() == tensors.keys()
    for key in tensors:
        torch.testing.assert_close(again[key], tensors[key], rtol=0, atol=0, msg=key)
    with pytest.raises(ConfigError, match="different training config"):
        train_var(tmp_path, tiny_config(var_steps=7))
    with pytest.raises(ConfigError, match="cond_dim"):
        tiny_config(transformer=tiny_transformer(cond_dim=16)).check()


def test_generation_is_seeded_and_img2img_keeps_the_coarse_scales(tiny_weights):
    gen = load_generator("builtin-var", weights=tiny_weights[1])
    emb = torch.randn(3, 1280)
    a = gen.generate(emb, seed=1)
    assert a.shape == (3, 3, 16, 16) and 0 <= float(a.min()) and float(a.max()) <= 1
    torch.testing.assert_close(a, gen.generate(emb, seed=1))
    init = torch.rand(3, 3, 40, 40)  # any size: resized to the tokenizer's
    own = gen.tokenizer.decode_tokens(gen.tokenizer.encode_tokens(
        torch.nn.functional.interpolate(init, size=16, mode="bilinear", antialias=True).clamp(0, 1)))
    torch.testing.assert_close(gen.generate(emb, init_images=init, strength=0.0), own, atol=1e-5, rtol=0)
    # strength 0.5 keeps round(0.5 · 3) = 2 of the 3 scales: the 2 coarse token maps are the init's
    from mindsight.generate.var.img2img import keep_scales

    assert keep_scales(0.5, 3) == 2 and keep_scales(1.0, 3) == 0 and keep_scales(0.0, 7) == 7
    with pytest.raises(DataFormatError, match="1280-d"):
        gen.generate(torch.randn(2, 12))
    with pytest.raises(DataFormatError, match="strength"):
        gen.generate(emb, init_images=init, strength=1.5)
    # the autoencoder of the low-level pathway: the continuous latent, decoded through quantisation
    z = gen.autoencoder.encode(init)
    assert z.shape == (3, 8, 4, 4) and gen.autoencoder.decode(z).shape == (3, 3, 16, 16)


def test_weight_files_are_checked(tiny_weights, tmp_path):
    with pytest.raises(MissingFileError, match="train-generator --kind var"):
        load_generator("builtin-var", weights=tmp_path / "none.safetensors")
    from mindsight.generate.generators.builtin import shipped_weights

    with pytest.raises(DataFormatError, match="not a builtin-var weight file"):
        load_generator("builtin-var", weights=shipped_weights())  # the diffusion generator's file
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataFormatError, match="not a readable builtin-var weight file"):
        load_generator("builtin-var", weights=tmp_path / "junk.safetensors")
    tensors, meta = load_tensors(tiny_weights[1])
    meta["transformer"]["embed_dim"] = 64  # an architecture the tensors do not fit
    from mindsight.train.checkpoint import save_tensors

    save_tensors(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(DataFormatError, match="do not fit the architecture"):
        load_generator("builtin-var", weights=tmp_path / "bad.safetensors")


def test_generators_declare_whether_they_finetune():
    assert generator_class("builtin-var").finetunes is True
    assert generator_class("builtin").finetunes is False
    assert generator_class("sdxl-ip-adapter").finetunes is False

    class Base(Generator):
        offline, weights_option = True, "weights"

        @classmethod
        def load(cls, device="cpu", weights=None):
            return cls()

        def generate(self, embeddings, **kwargs):
            return embeddings

        def modules(self):
            return {}

    class Claims(Base):
        name, finetunes = "claims", True

    class Hides(Base):
        name, finetunes = "hides", False

        def finetune(self, train_cond, train_images, val_cond, val_images, *, config=None, seed=0):
            return {}

    class WrongArgs(Base):
        name, finetunes = "wrong-args", True

        def finetune(self, cond, images, *, config=None, seed=0):
            return {}

        def finetuned_state(self):
            return {}

        def load_finetuned_state(self, tensors, info):
            pass

    with pytest.raises(ContractError, match="finetunes = True but does not override finetune, finetuned_state"):
        GENERATORS.register("claims")(Claims)
    with pytest.raises(ContractError, match="finetunes = False but overrides finetune"):
        GENERATORS.register("hides")(Hides)
    with pytest.raises(ContractError, match=r"finetune takes \(cond, images"):
        GENERATORS.register("wrong-args")(WrongArgs)
    assert not {"claims", "hides", "wrong-args"} & set(GENERATORS.names())


def _synthetic_pairs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditions that say which of 4 colour layouts each 16 px picture shows."""
    layouts = torch.rand(4, 3, 2, 2, generator=g)
    labels = torch.arange(n) % 4
    pics = torch.nn.functional.interpolate(layouts[labels], size=16, mode="nearest")
    pics = (pics + 0.03 * torch.randn(pics.shape, generator=g)).clamp(0, 1)
    cond = torch.nn.functional.one_hot(labels, 4).float().repeat(1, 4) + 0.1 * torch.randn(n, 16, generator=g)
    return cond, pics


def test_stage_two_lowers_the_validation_loss_and_trains_only_what_it_is_told():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    tok = MultiScaleVQVAE(tiny_tokenizer()).eval()
    var = VARTransformer(tiny_transformer(cond_dim=16))
    (tc, ti), (vc, vi) = _synthetic_pairs(64, g), _synthetic_pairs(16, g)
    assert condition_parameter_names(var) == ["embed_proj.weight", "embed_proj.bias"]
    before = {k: v.clone() for k, v in var.state_dict().items()}
    info, names = finetune_var(var, tok, tc, ti, vc, vi,
                               FinetuneConfig(train="condition", epochs=3, batch_size=16, lr=3e-2))
    assert names == ["embed_proj.weight", "embed_proj.bias"]
    assert info["parameters_trained"] == 16 * 32 + 32
    changed = {k for k, v in var.state_dict().items() if not torch.equal(v, before[k])}
    assert changed <= set(names)
    info, _ = finetune_var(var, tok, tc, ti, vc, vi, FinetuneConfig(epochs=8, batch_size=16, lr=3e-3, patience=8))
    assert info["trained"] == "all" and info["best_epoch"] >= 0
    assert info["val_loss"] < info["val_loss_before"] - 0.3, info
    with pytest.raises(DataFormatError, match="16-d"):
        finetune_var(var, tok, tc[:, :8], ti, vc, vi)
    with pytest.raises(ConfigError, match="condition"):
        FinetuneConfig(train="head")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A ridge run on the tiny simulated dataset (EfficientNet-Lite0 space)."""
    from mindsight.config import RunConfig
    from mindsight.simulate import preset, simulate
    from mindsight.train import train_run

    root, cache = tmp_path_factory.mktemp("sim"), tmp_path_factory.mktemp("sim-cache")
    simulate(root, preset("tiny"), cache_dir=cache)
    cfg = RunConfig.from_dict({"data": {"eeg": str(root / "preprocessed_data"), "images": str(root / "images"),
                                        "subjects": [1], "val_fraction": 0.2},
                               "model": {"encoder": "ridge"}, "train": {"seeds": [0]}})
    run_dir = tmp_path_factory.mktemp("run")
    train_run(cfg, run_dir, cache_dir=cache)
    return run_dir, cache


def test_reconstruct_with_builtin_var_fine_tunes_and_writes_what_builtin_writes(tiny_run, tiny_weights, tmp_path):
    from mindsight.generate.prior import PriorConfig
    from mindsight.generate.reconstruct import ReconstructConfig, reconstruct_run

    run_dir, cache = tiny_run
    small = FinetuneConfig(epochs=2, batch_size=8)
    rc = ReconstructConfig(generator="builtin-var", generator_options={"weights": str(tiny_weights[1])},
                           finetune_config=small, max_images=4)
    rep = reconstruct_run(run_dir, rc, out=tmp_path / "var", cache_dir=cache, score=False)
    base = reconstruct_run(run_dir, ReconstructConfig(max_images=4, steps=2, prior_config=PriorConfig(epochs=2)),
                           out=tmp_path / "builtin", cache_dir=cache, score=False)
    assert set(rep) == set(base)
    folders = lambda p: sorted(d.name for d in p.iterdir() if d.is_dir())  # noqa: E731
    assert folders(tmp_path / "var") == folders(tmp_path / "builtin") == \
        ["blurry", "chance", "reconstructed", "seen", "upper_bound"]
    assert len(list((tmp_path / "var" / "reconstructed").glob("*.png"))) == 4
    assert (tmp_path / "var" / "grid.png").is_file()
    saved = json.loads((tmp_path / "var" / "reconstruction.json").read_text())
    assert saved["config"]["finetune"] is True and saved["config"]["prior"] is False and saved["prior"] is None
    assert saved["finetune"]["trained"] == "all" and "val_loss" in saved["finetune"]
    assert "fine-tuned" in saved["conditioning"] and "before stage-2" in saved["protocol"]["upper_bound"]
    assert base["finetune"] is None and "diffusion prior" in base["conditioning"]
    # the fine-tuning is cached in the fold folder and reused
    fold_dir = next((run_dir / "folds").iterdir())
    cached = list(fold_dir.glob("finetune-builtin-var-*.safetensors"))
    assert len(cached) == 1
    again = reconstruct_run(run_dir, rc, out=tmp_path / "var2", cache_dir=cache, score=False)
    assert again["finetune"] == rep["finetune"]
    for png in (tmp_path / "var" / "reconstructed").iterdir():
        np.testing.assert_array_equal(np.asarray(Image.open(png)),
                                      np.asarray(Image.open(tmp_path / "var2" / "reconstructed" / png.name)))
    # without stage 2 the brain embeddings condition the pre-trained map; a prior with it is refused
    off = reconstruct_run(run_dir, ReconstructConfig(generator="builtin-var", finetune=False, prior=False,
                                                     lowlevel=False, generator_options=rc.generator_options,
                                                     max_images=2),
                          out=tmp_path / "off", cache_dir=cache, score=False)
    assert off["finetune"] is None and "as image embeddings" in off["conditioning"]
    with pytest.raises(ConfigError, match="no-prior"):
        reconstruct_run(run_dir, ReconstructConfig(generator="builtin-var", finetune=True, prior=True,
                                                   generator_options=rc.generator_options), out=tmp_path / "x",
                        cache_dir=cache, score=False)
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        reconstruct_run(run_dir, ReconstructConfig(finetune=True), out=tmp_path / "y", cache_dir=cache, score=False)


def test_a_generator_of_another_embedding_space_is_refused_in_one_line(tiny_weights, tmp_path):
    from mindsight.generate.reconstruct import _check_space

    gen = load_generator("builtin-var", weights=tiny_weights[1])
    with pytest.raises(DataFormatError, match="conditioned on efficientnet-lite0") as err:
        _check_space(gen, "clip-vit-h-14", tmp_path)
    assert "\n" not in str(err.value) and "--image-model efficientnet-lite0" in str(err.value)
