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
