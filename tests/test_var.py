"""VAR inside mindsight: the multi-scale tokenizer, the block-causal transformer, sampling, the
official-format loaders and the ``var-d16`` generator, all on tiny CPU configs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mindsight.generate.var import MultiScaleVQVAE, TokenizerConfig, VARConfig, VARTransformer
from mindsight.generate.var.sampling import filter_top_k_top_p

PATCHES = (1, 2, 4, 8)


def tiny_tokenizer_cfg(**kw) -> TokenizerConfig:
    base = dict(vocab_size=32, z_channels=4, ch=32, ch_mult=(1,), num_res_blocks=1,
                patch_nums=PATCHES, image_size=8)
    return TokenizerConfig(**{**base, **kw})


def tiny_var_cfg(**kw) -> VARConfig:
    base = dict(depth=2, embed_dim=32, num_heads=2, vocab_size=32, z_channels=4,
                patch_nums=PATCHES, cond_dim=16)
    return VARConfig(**{**base, **kw})


def simple_images(n: int = 8, size: int = 8, seed: int = 0) -> torch.Tensor:
    """Flat backgrounds with one flat square each."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        im = torch.zeros(3, size, size) + torch.rand(3, 1, 1, generator=g)
        a, b = torch.randint(0, size // 2, (2,), generator=g).tolist()
        im[:, a : a + size // 2, b : b + size // 2] = torch.rand(3, 1, 1, generator=g)
        out.append(im)
    return torch.stack(out)


@pytest.fixture(scope="module")
def trained_tokenizer() -> tuple[MultiScaleVQVAE, torch.Tensor]:
    torch.manual_seed(0)
    tok = MultiScaleVQVAE(tiny_tokenizer_cfg())
    x = simple_images()
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is several times faster than many
    try:
        for _ in range(200):
            recon, vq_loss, _ = tok(x)
            loss = F.mse_loss(recon, x) + vq_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return tok.eval(), x


@pytest.fixture()
def pair() -> tuple[MultiScaleVQVAE, VARTransformer]:
    torch.manual_seed(0)
    var = VARTransformer(tiny_var_cfg())
    # VAR's own init starts every block near the identity (AdaLN gates ≈ 1e-5); open the gates
    # so that each position's logits depend visibly on what it attends to
    var.init_weights(init_adaln=1.0, init_adaln_gamma=1.0, init_head=1.0)
    return MultiScaleVQVAE(tiny_tokenizer_cfg()).eval(), var.eval()


# -- tokenizer ---------------------------------------------------------------------------------


def test_tokenizer_reconstructs_better_as_scales_are_added(trained_tokenizer):
    tok, x = trained_tokenizer
    with torch.no_grad():
        tokens = tok.encode_tokens(x)
        f = tok.encode_latent(x)
        assert [t.shape for t in tokens] == [(8, p * p) for p in PATCHES]
        assert torch.allclose(tok.tokens_to_latent(tokens), tok.quantize_latent(f), atol=1e-5)
        latent_err = [F.mse_loss(tok.tokens_to_latent(tokens[:k]), f).item()
                      for k in range(1, len(PATCHES) + 1)]
        image_err = [F.mse_loss(tok.decode_tokens(tokens[:k]), x).item()
                     for k in range(1, len(PATCHES) + 1)]
    for a, b in zip(latent_err, latent_err[1:], strict=False):
        assert b <= a * 1.001, latent_err
    assert image_err[-1] < 0.5 * image_err[0], image_err
    assert image_err[-1] < 0.02, image_err


def test_tokenizer_teacher_inputs_match_the_sampling_steps(pair):
    tok, _ = pair
    tokens = tok.encode_tokens(torch.rand(2, 3, 8, 8))
    teacher = tok.teacher_inputs(tokens)
    assert teacher.shape == (2, sum(p * p for p in PATCHES[1:]), 4)
    f_hat, pieces = None, []
    for si in range(len(PATCHES)):
        f_hat, nxt = tok.next_input(si, f_hat, tokens[si])
        if nxt is not None:
            pieces.append(nxt)
    assert nxt is None
    assert torch.allclose(torch.cat(pieces, 1), teacher, atol=1e-6)
    assert torch.allclose(f_hat, tok.tokens_to_latent(tokens), atol=1e-6)


def test_tokenizer_rejects_bad_config_and_images():
    from mindsight.errors import ConfigError, DataFormatError

    with pytest.raises(ConfigError, match="image_size"):
        tiny_tokenizer_cfg(image_size=16)
    tok = MultiScaleVQVAE(tiny_tokenizer_cfg())
    with pytest.raises(DataFormatError, match=r"\(n, 3, 8, 8\)"):
        tok.encode_tokens(torch.rand(1, 3, 16, 16))
    assert TokenizerConfig.from_dict(tok.cfg.to_dict()) == tok.cfg


# -- transformer -------------------------------------------------------------------------------


def test_block_causal_mask_hides_later_scales(pair):
    tok, var = pair
    tokens = tok.encode_tokens(torch.rand(2, 3, 8, 8))
    x_in = tok.teacher_inputs(tokens)
    cond = torch.randn(2, 16)
    with torch.no_grad():
        base = var(cond, x_in)
        bounds = torch.tensor([0] + [p * p for p in PATCHES]).cumsum(0).tolist()
        first = PATCHES[0] ** 2
        for k in range(1, len(PATCHES)):  # perturb the input of scale k
            lo, hi = bounds[k] - first, bounds[k + 1] - first  # positions in x_in
            bumped = x_in.clone()
            bumped[:, lo:hi] += torch.randn_like(bumped[:, lo:hi])
            out = var(cond, bumped)
            assert torch.allclose(out[:, : bounds[k]], base[:, : bounds[k]], atol=1e-5)
            changed = (out[:, bounds[k]:] - base[:, bounds[k]:]).abs().amax(dim=(0, 2))
            assert bool((changed > 1e-6).all()), f"scale {k}: some later logits did not change"
    mask = var.attn_mask()
    lvl = var.lvl_1L[0]
    assert torch.equal(mask, lvl[:, None] >= lvl[None, :])


def test_generation_with_kv_cache_matches_teacher_forcing(pair):
    tok, var = pair
    cond = torch.randn(3, 16)
    tokens = var.generate(cond, tok, guidance_scale=0.0, top_k=1, top_p=0.0, seed=0)
    with torch.no_grad():
        logits = var(cond, tok.teacher_inputs(tokens))
    assert torch.equal(logits.argmax(-1), torch.cat(tokens, 1))


def test_sampling_is_seeded_and_top_k_1_is_greedy(pair):
    tok, var = pair
    cond = torch.randn(2, 16)
    a = var.generate(cond, tok, seed=3, top_k=0, top_p=0.0)
    b = var.generate(cond, tok, seed=3, top_k=0, top_p=0.0)
    c = var.generate(cond, tok, seed=4, top_k=0, top_p=0.0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    g1 = var.generate(cond, tok, seed=1, top_k=1, guidance_scale=2.0)
    g2 = var.generate(cond, tok, seed=2, top_k=1, guidance_scale=2.0)
    assert all(torch.equal(x, y) for x, y in zip(g1, g2, strict=True))


def test_top_k_top_p_filter():
    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    assert torch.isinf(filter_top_k_top_p(logits, top_k=2)).sum() == 2
    kept = ~torch.isinf(filter_top_k_top_p(logits, top_p=0.7))
    assert kept[0, 0].tolist() == [False, False, True, True]  # p = .03 .09 .24 .64
    assert (~torch.isinf(filter_top_k_top_p(logits, top_p=0.01))).sum() == 1


def test_guidance_changes_output_and_prefix_is_kept(pair):
    tok, var = pair
    cond = torch.randn(2, 16)
    plain = var.generate(cond, tok, guidance_scale=0.0, seed=0)
    guided = var.generate(cond, tok, guidance_scale=8.0, seed=0)
    assert not all(torch.equal(x, y) for x, y in zip(plain, guided, strict=True))
    prefix = [torch.randint(0, 32, (2, p * p)) for p in PATCHES[:2]]
    out = var.generate(cond, tok, seed=0, prefix=prefix)
    assert torch.equal(out[0], prefix[0]) and torch.equal(out[1], prefix[1])
    full = var.generate(cond, tok, seed=0, prefix=out)
    assert all(torch.equal(x, y) for x, y in zip(full, out, strict=True))


def test_transformer_learns_fixed_tokens(pair):
    tok, var = pair
    var.train()
    torch.manual_seed(0)
    tokens = tok.encode_tokens(torch.rand(4, 3, 8, 8))
    cond = torch.randn(4, 16)
    opt = torch.optim.AdamW(var.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        loss = var.loss(cond, tokens, tok, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


# -- official file formats ---------------------------------------------------------------------
# The key names and shapes below are written out from FoundationVision/VAR's architecture
# (models/vqvae.py, basic_vae.py, quant.py, var.py, basic_var.py), independently of our modules.


def _conv(out: int, inp: int, k: int, name: str) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out, inp, k, k), f"{name}.bias": (out,)}


def _norm(c: int, name: str) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (c,), f"{name}.bias": (c,)}


def _res(cin: int, cout: int, name: str) -> dict[str, tuple[int, ...]]:
    keys = {**_norm(cin, f"{name}.norm1"), **_conv(cout, cin, 3, f"{name}.conv1"),
            **_norm(cout, f"{name}.norm2"), **_conv(cout, cout, 3, f"{name}.conv2")}
    if cin != cout:
        keys.update(_conv(cout, cin, 1, f"{name}.nin_shortcut"))
    return keys


def _attn(c: int, name: str) -> dict[str, tuple[int, ...]]:
    return {**_norm(c, f"{name}.norm"), **_conv(3 * c, c, 1, f"{name}.qkv"),
            **_conv(c, c, 1, f"{name}.proj_out")}


def official_tokenizer_shapes(ch: int, ch_mult: tuple[int, ...], n_res: int, z: int, vocab: int,
                              n_scales: int, n_phi: int = 4) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    last, widths = len(ch_mult) - 1, [ch * m for m in ch_mult]
    keys.update(_conv(ch, 3, 3, "encoder.conv_in"))
    cin = ch
    for i, w in enumerate(widths):
        for j in range(n_res):
            keys.update(_res(cin, w, f"encoder.down.{i}.block.{j}"))
            cin = w
            if i == last:
                keys.update(_attn(w, f"encoder.down.{i}.attn.{j}"))
        if i != last:
            keys.update(_conv(w, w, 3, f"encoder.down.{i}.downsample.conv"))
    for part in ("encoder", "decoder"):
        top = widths[-1]
        keys.update({**_res(top, top, f"{part}.mid.block_1"), **_attn(top, f"{part}.mid.attn_1"),
                     **_res(top, top, f"{part}.mid.block_2")})
    keys.update({**_norm(widths[-1], "encoder.norm_out"), **_conv(z, widths[-1], 3, "encoder.conv_out")})
    keys.update(_conv(widths[-1], z, 3, "decoder.conv_in"))
    cin = widths[-1]
    for i in reversed(range(len(widths))):
        for j in range(n_res + 1):
            keys.update(_res(cin, widths[i], f"decoder.up.{i}.block.{j}"))
            cin = widths[i]
            if i == last:
                keys.update(_attn(widths[i], f"decoder.up.{i}.attn.{j}"))
        if i != 0:
            keys.update(_conv(widths[i], widths[i], 3, f"decoder.up.{i}.upsample.conv"))
    keys.update({**_norm(widths[0], "decoder.norm_out"), **_conv(3, widths[0], 3, "decoder.conv_out")})
    keys.update({**_conv(z, z, 3, "quant_conv"), **_conv(z, z, 3, "post_quant_conv"),
                 "quantize.embedding.weight": (vocab, z), "quantize.ema_vocab_hit_SV": (n_scales, vocab)})
    for k in range(n_phi):
        keys.update(_conv(z, z, 3, f"quantize.quant_resi.qresi_ls.{k}"))
    return keys


def official_var_shapes(depth: int, width: int, heads: int, vocab: int, z: int,
                        patch_nums: tuple[int, ...], num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    c, length = width, sum(p * p for p in patch_nums)
    keys = {"pos_start": (1, patch_nums[0] ** 2, c), "pos_1LC": (1, length, c), "lvl_1L": (1, length),
            "attn_bias_for_masking": (1, 1, length, length), "word_embed.weight": (c, z),
            "word_embed.bias": (c,), "class_emb.weight": (num_classes + 1, c),
            "lvl_embed.weight": (len(patch_nums), c), "head_nm.ada_lin.1.weight": (2 * c, c),
            "head_nm.ada_lin.1.bias": (2 * c,), "head.weight": (vocab, c), "head.bias": (vocab,)}
    for i in range(depth):
        b = f"blocks.{i}"
        keys.update({f"{b}.attn.q_bias": (c,), f"{b}.attn.v_bias": (c,), f"{b}.attn.zero_k_bias": (c,),
                     f"{b}.attn.scale_mul_1H11": (1, heads, 1, 1), f"{b}.attn.mat_qkv.weight": (3 * c, c),
                     f"{b}.attn.proj.weight": (c, c), f"{b}.attn.proj.bias": (c,),
                     f"{b}.ffn.fc1.weight": (4 * c, c), f"{b}.ffn.fc1.bias": (4 * c,),
                     f"{b}.ffn.fc2.weight": (c, 4 * c), f"{b}.ffn.fc2.bias": (c,),
                     f"{b}.ada_lin.1.weight": (6 * c, c), f"{b}.ada_lin.1.bias": (6 * c,)})
    return keys


def write_random(path, shapes: dict[str, tuple[int, ...]], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(*s, generator=g) * 0.05 for k, s in shapes.items()}
    torch.save(state, path)
    return state


def tiny_official_files(folder, *, var_shapes=None):
    from mindsight.generate.var.official import TOKENIZER_FILE, VAR_FILE

    tok = write_random(folder / TOKENIZER_FILE,
                       official_tokenizer_shapes(32, (1,), 1, 4, 32, n_scales=10))
    var = write_random(folder / VAR_FILE, var_shapes or official_var_shapes(2, 32, 2, 32, 4, PATCHES), seed=1)
    return tok, var


TINY_GEN = dict(tokenizer_config=tiny_tokenizer_cfg().to_dict(),
                var_config=tiny_var_cfg().to_dict(), batch_size=2, top_k=0, top_p=0.0)


def test_official_files_load_key_for_key(tmp_path):
    from mindsight.generate.var.official import (
        condition_trained,
        load_official_tokenizer,
        load_official_var,
    )

    tok_state, var_state = tiny_official_files(tmp_path)
    tok, report = load_official_tokenizer(tmp_path / "vae_ch160v4096z32.pth", tiny_tokenizer_cfg())
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(tok.quantize.embedding.weight, tok_state["quantize.embedding.weight"])
    assert torch.equal(tok.decoder.up[0].block[1].conv2.weight, tok_state["decoder.up.0.block.1.conv2.weight"])
    assert tok.quantize.ema_vocab_hit_SV.shape == (len(PATCHES), 32)  # derived: the file's 10 scales ignored
    var, report = load_official_var(tmp_path / "var_d16.pth", tiny_var_cfg())
    assert report.unexpected == ["class_emb.weight"]
    assert report.missing == ["embed_proj.bias", "embed_proj.weight"]
    assert "embed_proj" in report.summary() and not condition_trained(report)
    assert torch.equal(var.blocks[1].ada_lin[1].weight, var_state["blocks.1.ada_lin.1.weight"])
    assert torch.equal(var.pos_1LC, var_state["pos_1LC"])
    assert torch.equal(var.attn_mask(), var.lvl_1L[0][:, None] >= var.lvl_1L[0][None, :])


def test_official_loaders_refuse_wrong_files(tmp_path):
    from mindsight.errors import DataFormatError, MissingFileError
    from mindsight.generate.var.official import load_official_tokenizer, load_official_var

    tiny_official_files(tmp_path)
    with pytest.raises(DataFormatError, match="not a VAR transformer state dict"):
        load_official_var(tmp_path / "vae_ch160v4096z32.pth", tiny_var_cfg())
    with pytest.raises(DataFormatError, match="not a VAR tokenizer state dict"):
        load_official_tokenizer(tmp_path / "var_d16.pth", tiny_tokenizer_cfg())
    with pytest.raises(DataFormatError, match=r"key head\.weight has shape \(32, 32\), the config "
                                              r"expects \(64, 32\).*VARConfig\(depth=2\)"):
        load_official_var(tmp_path / "var_d16.pth", tiny_var_cfg(vocab_size=64))
    with pytest.raises(DataFormatError, match=r"quantize\.embedding\.weight has shape \(32, 4\)"):
        load_official_tokenizer(tmp_path / "vae_ch160v4096z32.pth", tiny_tokenizer_cfg(vocab_size=16))
    deeper = official_var_shapes(3, 32, 2, 32, 4, PATCHES)
    write_random(tmp_path / "d3.pth", deeper)
    with pytest.raises(DataFormatError, match=r"unknown keys \(e\.g\. blocks\.2\..*depth-3"):
        load_official_var(tmp_path / "d3.pth", tiny_var_cfg())
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(DataFormatError, match="expected a state dict of tensors"):
        load_official_var(tmp_path / "list.pth", tiny_var_cfg())
    with pytest.raises(MissingFileError, match="huggingface.co/FoundationVision/var"):
        load_official_var(tmp_path / "absent.pth", tiny_var_cfg())


def test_var_d16_generator_builds_from_official_files_and_generates(tmp_path, caplog):
    from mindsight.generate.base import generator_class, load_generator, weights_options

    cls = generator_class("var-d16")
    assert cls.offline is False and weights_options("var-d16", "/w") == {"var_weights": "/w"}
    tiny_official_files(tmp_path)
    gen = load_generator("var-d16", var_weights=str(tmp_path), **TINY_GEN)
    assert gen.embedding_model == "clip-vit-h-14" and gen.image_size == 8
    assert gen.autoencoder.latent_shape == (4, 8, 8) and not gen.condition_trained
    emb = torch.randn(3, 16)
    with caplog.at_level("WARNING", logger="mindsight"):
        a = gen.generate(emb, seed=5)
    assert "untrained" in caplog.text
    assert a.shape == (3, 3, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, gen.generate(emb, seed=5))
    assert not torch.equal(a, gen.generate(emb, seed=6))
    init = simple_images(3)
    assert torch.equal(gen.generate(emb, init_images=init, strength=0.0), init)
    assert gen.img2img_scales(0.1) == len(PATCHES) and gen.img2img_scales(0.5) == 2
    kept = gen.generate(emb, init_images=init, strength=0.1)  # all scales kept: the init's tokens
    assert torch.allclose(kept, gen.tokenizer.decode_tokens(gen.tokenizer.encode_tokens(init)), atol=1e-6)
    latents = gen.autoencoder.encode(init)
    assert latents.shape == (3, 4, 8, 8) and gen.autoencoder.decode(latents).shape == (3, 3, 8, 8)
    assert gen.describe()["condition_trained"] is False
    assert set(gen.parameter_counts()) == {"tokenizer", "transformer"}


def test_var_d16_stage2_checkpoint_has_a_trained_condition(tmp_path, caplog):
    from mindsight.generate.base import load_generator

    shapes = official_var_shapes(2, 32, 2, 32, 4, PATCHES)
    del shapes["class_emb.weight"]
    shapes.update({"embed_proj.weight": (32, 16), "embed_proj.bias": (32,)})
    tiny_official_files(tmp_path, var_shapes=shapes)
    gen = load_generator("var-d16", var_weights=str(tmp_path / "var_d16.pth"), **TINY_GEN)
    assert gen.condition_trained
    with caplog.at_level("WARNING", logger="mindsight"):
        gen.generate(torch.randn(1, 16))
    assert "untrained" not in caplog.text


def test_var_d16_is_fine_tuned_by_avde_stage_2(tmp_path, caplog):
    """var-d16 declares finetunes: stage 2 trains its condition map on (embedding, picture)
    pairs, after which it no longer warns that the map is untrained."""
    from mindsight.generate.base import load_generator
    from mindsight.generate.finetune import FinetuneConfig

    tiny_official_files(tmp_path)
    gen = load_generator("var-d16", var_weights=str(tmp_path), **TINY_GEN)
    assert gen.finetunes and not gen.condition_trained
    imgs, cond = simple_images(6), torch.randn(6, 16)
    before = gen.transformer.embed_proj.weight.detach().clone()
    # validated on its own pairs, so that a better validation loss (the kept weights) is reached
    gen.finetune(cond, imgs, cond, imgs, config=FinetuneConfig(train="condition", epochs=3, batch_size=6,
                                                                 lr=3e-2, cond_drop=0.0))
    assert gen.condition_trained
    assert not torch.equal(before, gen.transformer.embed_proj.weight)
    assert set(gen.finetuned_state()) == {"transformer.embed_proj.weight", "transformer.embed_proj.bias"}
    caplog.clear()
    with caplog.at_level("WARNING", logger="mindsight"):
        gen.generate(cond[:2])
    assert not [r for r in caplog.records if r.levelno >= 30 and "untrained" in r.getMessage()]
