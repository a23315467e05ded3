"""VAR's next-scale prediction transformer, conditioned on an embedding as AVDE does.

A GPT-style decoder over the token pyramid of :class:`~mindsight.generate.var.tokenizer.
MultiScaleVQVAE` (L = Σ pn² tokens; 680 at 256 px). Position i of the sequence predicts token i
from every token of the *earlier* scales: the input of scale k is the tokenizer's f̂ of scales
< k, area-downsampled to pn_k × pn_k (``teacher_inputs``), and the first scale's input is the
start token. A block-causal mask lets each position attend to every position of its own and
earlier scales and none of the later ones.

Architecture (FoundationVision/VAR ``models/var.py``, ``basic_var.py``; key names as the
official ``var_d16.pth`` so it loads one to one; the code is mindsight's own):

- ``word_embed`` Linear(Cvae → C) of the inputs; ``pos_start`` + the condition form the start
  token; ``pos_1LC`` (one learned vector per position) and ``lvl_embed`` (one per scale) are added;
- ``blocks``: pre-norm self-attention + GELU MLP, both modulated by AdaLN: ``ada_lin`` maps the
  condition to six C-vectors (γ₁, γ₂, scale₁, scale₂, shift₁, shift₂) — or, with ``shared_aln``,
  one shared ``shared_ada_lin`` plus a per-block learned offset ``ada_gss``;
- attention with ``attn_l2_norm``: q and k are L2-normalised and q multiplied by a learned
  per-head scale (``scale_mul_1H11``, log-parameterised, at most 100); q and v have biases, k none;
- ``head_nm`` (AdaLN with scale and shift) and ``head`` Linear(C → vocab).

The condition (AVDE, ``models/var_eeg.py``): VAR's class embedding is replaced by
``embed_proj`` = Linear(cond_dim → C) of the (EEG-predicted) image embedding. The unconditional
input for classifier-free guidance is what AVDE uses: the all-zero embedding, so the null
condition is ``embed_proj``'s (learned) bias. Training drops the condition with probability
``cond_drop`` (0.1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from mindsight.config import build_dataclass
from mindsight.errors import ConfigError, DataFormatError
from mindsight.generate.var.sampling import cfg_mix, sample_top_k_top_p

if TYPE_CHECKING:
    from mindsight.generate.var.tokenizer import MultiScaleVQVAE


@dataclass
class VARConfig:
    """Architecture of the transformer; defaults are the official ``var_d16.pth`` apart from the
    condition (AVDE's Linear map of a ``cond_dim`` embedding instead of 1000 ImageNet classes)."""

    depth: int = 16
    embed_dim: int | None = None  # None: 64 * depth (VAR's width rule)
    num_heads: int | None = None  # None: depth
    mlp_ratio: float = 4.0
    vocab_size: int = 4096
    z_channels: int = 32
    patch_nums: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    cond_dim: int = 1024  # AVDE: the 1024-d CLIP (ViT-H-14) space
    cond_drop: float = 0.1  # training probability of the null condition (for CFG)
    shared_aln: bool = False
    attn_l2_norm: bool = True
    norm_eps: float = 1e-6
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        self.patch_nums = tuple(int(p) for p in self.patch_nums)
        if len(self.patch_nums) < 2:
            raise ConfigError(f"VAR patch_nums needs at least two scales, got {self.patch_nums}")
        if self.width % self.heads:
            raise ConfigError(f"VAR embed_dim {self.width} is not divisible by num_heads {self.heads}")
        if not 0 <= self.cond_drop < 1:
            raise ConfigError(f"VAR cond_drop must be in [0, 1), got {self.cond_drop}")

    @property
    def width(self) -> int:
        return int(self.embed_dim or 64 * self.depth)

    @property
    def heads(self) -> int:
        return int(self.num_heads or self.depth)

    @property
    def num_tokens(self) -> int:
        return sum(p * p for p in self.patch_nums)

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["patch_nums"] = list(self.patch_nums)
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VARConfig:
        return build_dataclass(cls, raw, "VAR config")


class KVCache:
    """Keys and values of the positions seen so far, one per block (generation)."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=2)
        return self.k, self.v


class SelfAttention(nn.Module):
    """Multi-head attention with VAR's biases (q and v only) and optional L2-normalised q, k."""

    def __init__(self, dim: int, heads: int, l2_norm: bool) -> None:
        super().__init__()
        self.heads, self.head_dim, self.l2_norm = heads, dim // heads, l2_norm
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim))
        if l2_norm:
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100)
            self.scale = 1.0
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None,
                cache: KVCache | None = None) -> torch.Tensor:
        n, length, dim = x.shape
        qkv_bias = torch.cat([self.q_bias, self.zero_k_bias, self.v_bias])
        qkv = F.linear(x, self.mat_qkv.weight, qkv_bias).view(n, length, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (n, heads, length, head_dim)
        if self.l2_norm:
            scale = self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
            q, k = F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)
        if cache is not None:
            k, v = cache.extend(k, v)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class AdaLNSelfAttn(nn.Module):
    """One transformer block with AdaLN modulation by the condition."""

    def __init__(self, cfg: VARConfig, drop_path: float) -> None:
        super().__init__()
        dim = cfg.width
        self.dim = dim
        self.attn = SelfAttention(dim, cfg.heads, cfg.attn_l2_norm)
        self.ffn = FFN(dim, round(dim * cfg.mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(dim, eps=cfg.norm_eps, elementwise_affine=False)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.shared_aln = cfg.shared_aln
        if cfg.shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, dim) / dim ** 0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, bias: torch.Tensor | None,
                cache: KVCache | None = None) -> torch.Tensor:
        """``cond``: (n, C), or with ``shared_aln`` the shared modulation (n, 1, 6, C)."""
        if self.shared_aln:
            mods = self.ada_gss + cond
        else:
            mods = self.ada_lin(cond).view(-1, 1, 6, self.dim)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = mods.unbind(2)
        h = self.ln_wo_grad(x) * (scale1 + 1) + shift1
        x = x + self.drop_path(self.attn(h, bias, cache) * gamma1)
        h = self.ln_wo_grad(x) * (scale2 + 1) + shift2
        return x + self.drop_path(self.ffn(h) * gamma2)


class SharedAdaLin(nn.Linear):
    """With ``shared_aln``: one Linear(C → 6C) for all blocks, reshaped to (n, 1, 6, C)."""

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return super().forward(cond).view(-1, 1, 6, self.out_features // 6)


class AdaLNBeforeHead(nn.Module):
    """Final LayerNorm with condition-dependent scale and shift."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.dim = dim
        self.ln_wo_grad = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond).view(-1, 1, 2, self.dim).unbind(2)
        return self.ln_wo_grad(x) * (scale + 1) + shift


def scale_index(patch_nums: tuple[int, ...]) -> torch.Tensor:
    """The scale of each of the L positions, (L,) long."""
    return torch.cat([torch.full((p * p,), i, dtype=torch.long) for i, p in enumerate(patch_nums)])


class VARTransformer(nn.Module):
    """Next-scale prediction over the token pyramid, conditioned on an embedding (AVDE)."""

    def __init__(self, cfg: VARConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dim, length = cfg.width, cfg.num_tokens
        self.first_l = cfg.patch_nums[0] ** 2
        std = math.sqrt(1 / dim / 3)
        self.word_embed = nn.Linear(cfg.z_channels, dim)
        self.embed_proj = nn.Linear(cfg.cond_dim, dim)  # AVDE's replacement of class_emb
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, dim))
        self.pos_1LC = nn.Parameter(torch.empty(1, length, dim))
        self.lvl_embed = nn.Embedding(len(cfg.patch_nums), dim)
        for p in (self.pos_start, self.pos_1LC, self.lvl_embed.weight):
            nn.init.trunc_normal_(p.data, std=std)
        self.shared_ada_lin = (nn.Sequential(nn.SiLU(), SharedAdaLin(dim, 6 * dim))
                               if cfg.shared_aln else nn.Identity())
        # stochastic depth rising linearly from 0 to drop_path_rate over the blocks
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(AdaLNSelfAttn(cfg, rates[i]) for i in range(cfg.depth))
        self.head_nm = AdaLNBeforeHead(dim, cfg.norm_eps)
        self.head = nn.Linear(dim, cfg.vocab_size)
        # the scale of each position, and the block-causal additive mask (0 / −inf)
        lvl = scale_index(cfg.patch_nums)
        self.register_buffer("lvl_1L", lvl[None].clone())
        allowed = lvl[:, None] >= lvl[None, :]
        bias = torch.zeros(length, length).masked_fill(~allowed, float("-inf"))
        self.register_buffer("attn_bias_for_masking", bias[None, None].contiguous())
        self.init_weights()

    # -- initialisation (VAR's init_weights with its defaults) ---------------------------------

    @torch.no_grad()
    def init_weights(self, init_adaln: float = 0.5, init_adaln_gamma: float = 1e-5,
                     init_head: float = 0.02) -> None:
        """VAR's initialisation: truncated normals of std √(1/3C), a near-zero head, AdaLN gates
        (γ) near zero so each block starts close to the identity, residual projections scaled
        by 1/√(2·depth)."""
        dim, depth = self.cfg.width, self.cfg.depth
        std = math.sqrt(1 / dim / 3)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
        self.head.weight.mul_(init_head)
        self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
        for block in self.blocks:
            block.attn.proj.weight.div_(math.sqrt(2 * depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * depth))
            if block.shared_aln:
                block.ada_gss[:, :, 2:].mul_(init_adaln)
                block.ada_gss[:, :, :2].mul_(init_adaln_gamma)
            else:
                block.ada_lin[-1].weight[2 * dim:].mul_(init_adaln)
                block.ada_lin[-1].weight[: 2 * dim].mul_(init_adaln_gamma)

    # -- condition -----------------------------------------------------------------------------

    def condition(self, cond: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """(n, cond_dim) → (n, C). Rows where ``drop`` is True get the null condition: AVDE's
        zero embedding, i.e. ``embed_proj``'s bias."""
        if cond.ndim != 2 or cond.shape[1] != self.cfg.cond_dim:
            raise DataFormatError(f"VAR is conditioned on (n, {self.cfg.cond_dim}) embeddings, "
                                  f"got {tuple(cond.shape)}")
        cond = cond.to(self.embed_proj.weight.device, self.embed_proj.weight.dtype)
        if drop is not None:
            cond = torch.where(drop.to(cond.device).view(-1, 1), torch.zeros_like(cond), cond)
        return self.embed_proj(cond)

    def attn_mask(self) -> torch.Tensor:
        """Boolean (L, L): True where position i (row) may attend to position j (column), i.e.
        j's scale ≤ i's scale. ``forward`` uses its additive form (0 / −inf)."""
        return self.attn_bias_for_masking[0, 0] == 0

    # -- teacher forcing -----------------------------------------------------------------------

    def _logits(self, x: torch.Tensor, cond_c: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(x, cond_c)).float()

    def forward(self, cond: torch.Tensor, x_in: torch.Tensor,
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (n, L, vocab) for condition ``cond`` (n, cond_dim) and the teacher-forcing
        input ``x_in`` = ``tokenizer.teacher_inputs(tokens)`` (n, L − first_l, Cvae)."""
        length = self.cfg.num_tokens
        if x_in.ndim != 3 or x_in.shape[1:] != (length - self.first_l, self.cfg.z_channels):
            raise DataFormatError(f"VAR's teacher-forcing input must be (n, {length - self.first_l}, "
                                  f"{self.cfg.z_channels}), got {tuple(x_in.shape)}")
        cond_c = self.condition(cond, drop)
        n = cond_c.shape[0]
        start = cond_c[:, None, :].expand(n, self.first_l, -1) + self.pos_start
        x = torch.cat([start, self.word_embed(x_in.to(cond_c.dtype))], dim=1)
        x = x + self.lvl_embed(self.lvl_1L) + self.pos_1LC
        mods = self.shared_ada_lin(cond_c)
        bias = self.attn_bias_for_masking.to(x.dtype)
        for block in self.blocks:
            x = block(x, mods, bias)
        return self._logits(x, cond_c)

    def loss(self, cond: torch.Tensor, tokens: list[torch.Tensor], tokenizer: MultiScaleVQVAE, *,
             drop_prob: float | None = None, generator: torch.Generator | None = None,
             drop: torch.Tensor | None = None) -> torch.Tensor:
        """Mean cross-entropy over all L tokens, the condition dropped with ``drop_prob``
        (None: ``cfg.cond_drop``): VAR's pretraining loss and AVDE's stage-2 loss. ``drop``: the
        rows whose condition is dropped, drawn by the caller (a distributed step draws them for
        the global batch)."""
        p = self.cfg.cond_drop if drop_prob is None else float(drop_prob)
        n = cond.shape[0]
        if drop is None and p > 0:
            device = generator.device if generator is not None else torch.device("cpu")
            drop = torch.rand(n, generator=generator, device=device) < p
        with torch.no_grad():
            x_in = tokenizer.teacher_inputs(tokens)
        logits = self(cond, x_in, drop)
        target = torch.cat(tokens, dim=1).to(logits.device)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))

    # -- generation ----------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, cond: torch.Tensor, tokenizer: MultiScaleVQVAE, *,
                 guidance_scale: float = 4.0, top_k: int = 900, top_p: float = 0.95, seed: int = 0,
                 prefix: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Token maps per scale, (n, pn²) each, sampled scale by scale with a KV cache.

        Classifier-free guidance as VAR: at scale si the logits are (1 + t)·cond − t·uncond with
        t = guidance_scale · si / (K − 1) (no guidance at the first scale, full at the last).
        ``top_k`` (0: off) and ``top_p`` (0: off) filter each distribution before sampling.
        ``prefix``: the first ``len(prefix)`` scales' tokens are given (img2img) and kept as is.
        Same seed, same tokens (on the CPU; a ``torch.Generator`` on the model's device).
        """
        cfg = self.cfg
        prefix = list(prefix or [])
        if len(prefix) > len(cfg.patch_nums):
            raise DataFormatError(f"prefix has {len(prefix)} scales; VAR has {len(cfg.patch_nums)}")
        device = self.head.weight.device
        n = cond.shape[0]
        guided = guidance_scale != 0
        rows = 2 * n if guided else n
        drop = torch.arange(rows, device=device) >= n  # second half: the null condition
        cond_c = self.condition(cond.repeat(2, 1) if guided else cond, drop)
        mods = self.shared_ada_lin(cond_c)
        lvl_pos = self.lvl_embed(self.lvl_1L) + self.pos_1LC
        x = cond_c[:, None, :].expand(rows, self.first_l, -1) + self.pos_start + lvl_pos[:, : self.first_l]
        rng = torch.Generator(device=device).manual_seed(int(seed))
        caches = [KVCache() for _ in self.blocks]
        f_hat, out, start = None, [], 0
        last = len(cfg.patch_nums) - 1
        for si, pn in enumerate(cfg.patch_nums):
            start += pn * pn
            for block, cache in zip(self.blocks, caches, strict=True):
                x = block(x, mods, None, cache)
            if si < len(prefix):
                tokens = prefix[si].to(device).long()
                if tokens.shape != (n, pn * pn):
                    raise DataFormatError(f"prefix tokens of scale {si} must be ({n}, {pn * pn}), "
                                          f"got {tuple(tokens.shape)}")
            else:
                logits = self._logits(x, cond_c)
                if guided:
                    logits = cfg_mix(logits[:n], logits[n:], guidance_scale * si / last)
                tokens = sample_top_k_top_p(logits, top_k=top_k, top_p=top_p, generator=rng)
            out.append(tokens)
            if si == last:
                break
            f_hat, nxt = tokenizer.next_input(si, f_hat, tokens)
            x = self.word_embed(nxt) + lvl_pos[:, start : start + cfg.patch_nums[si + 1] ** 2]
            if guided:
                x = x.repeat(2, 1, 1)
        return out
