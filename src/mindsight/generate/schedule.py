"""The diffusion scheduler shared by the prior (vectors) and the built-in generator (latents).

A cosine noise schedule (Nichol & Dhariwal 2021) over ``n_train_steps`` discrete times, models
that predict *v* (Salimans & Ho 2022: v = √ᾱ·ε − √(1−ᾱ)·x₀, well scaled at every noise level),
deterministic DDIM sampling with any number of steps, classifier-free guidance, and img2img:
start from a noised copy of an initial sample at ``strength`` × the full noise level.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# model(x_t, t, cond, use_cond) → v; use_cond False asks for the unconditional prediction
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class CosineSchedule:
    """ᾱ(t) = cos²((t/T + s)/(1 + s) · π/2), clipped so that no step destroys all signal."""

    def __init__(self, n_train_steps: int = 1000, offset: float = 0.008) -> None:
        self.n_train_steps = int(n_train_steps)
        steps = torch.arange(self.n_train_steps + 1, dtype=torch.float64) / self.n_train_steps
        f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
        self.alpha_bar = torch.cumprod(1 - betas, 0).float()  # ᾱ at t = 0 … T−1

    def _ab(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        ab = self.alpha_bar.to(like.device)[t]
        return ab.view(-1, *([1] * (like.dim() - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def v_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = self._ab(t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def sample_times(self, n: int, generator: torch.Generator | None = None,
                     device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.randint(0, self.n_train_steps, (n,), generator=generator).to(device)

    def timesteps(self, steps: int, strength: float = 1.0) -> list[int]:
        """The descending times DDIM visits: ``steps`` evenly spaced ones, of which only those at
        or below ``strength`` × T are kept (img2img skips the noisiest)."""
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        full = torch.linspace(self.n_train_steps - 1, 0, steps).round().long().tolist()
        limit = strength * (self.n_train_steps - 1)
        return [t for t in full if t <= limit + 1e-9]

    @torch.no_grad()
    def sample(self, model: Denoiser, cond: torch.Tensor, shape: tuple[int, ...], *, steps: int = 25,
               guidance_scale: float = 1.0, init: torch.Tensor | None = None, strength: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """DDIM (η = 0) from noise, or from ``init`` noised to ``strength`` (img2img).

        ``guidance_scale`` g mixes v = v_uncond + g·(v_cond − v_uncond); g = 1 is the plain
        conditional model, g = 0 the unconditional one.
        """
        device = cond.device
        n = shape[0]
        noise = torch.randn(shape, generator=generator).to(device)
        times = self.timesteps(steps, strength if init is not None else 1.0)
        if init is None:
            x = noise
        elif not times:  # strength 0: nothing to do
            return init.clone()
        else:
            x = self.add_noise(init, noise, torch.full((n,), times[0], device=device))
        on = torch.ones(n, dtype=torch.bool, device=device)
        for i, t in enumerate(times):
            tt = torch.full((n,), t, device=device, dtype=torch.long)
            if guidance_scale == 1.0:
                v = model(x, tt, cond, on)
            else:  # one batched call for the conditional and the unconditional prediction
                both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, cond]),
                             torch.cat([on, ~on]))
                v_c, v_u = both[:n], both[n:]
                v = v_u + guidance_scale * (v_c - v_u)
            ab = self._ab(tt, x)
            x0 = ab.sqrt() * x - (1 - ab).sqrt() * v
            eps = (1 - ab).sqrt() * x + ab.sqrt() * v
            if i + 1 < len(times):
                ab_prev = self._ab(torch.full_like(tt, times[i + 1]), x)
                x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
            else:
                x = x0
        return x


def timestep_embedding(t: torch.Tensor, dim: int, n_train_steps: int = 1000) -> torch.Tensor:
    """Sinusoidal features of the diffusion time (t / T scaled to 0…1000), as in DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = (t.float() * (1000.0 / n_train_steps))[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)
