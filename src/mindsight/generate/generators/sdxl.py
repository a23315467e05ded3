"""Stable Diffusion XL conditioned on image embeddings through IP-Adapter (diffusers).

``sdxl-ip-adapter``        SDXL base 1.0 + IP-Adapter (ViT-H), 30 steps, guidance 5, 1024 px:
                           ATM's stage II (img2img from the low-level pathway's blurry image).
``sdxl-turbo-ip-adapter``  SDXL-Turbo + the same IP-Adapter, 4 steps, no guidance, 512 px.

The embedding predicted from brain data (OpenCLIP ViT-H-14 image embedding, 1024-d, the space of
``h94/IP-Adapter`` ``sdxl_models/ip-adapter_sdxl_vit-h.safetensors``) goes straight into the
pipeline as ``ip_adapter_image_embeds``: no CLIP image encoder is loaded. Captions, when given,
become the text prompt (default: the empty prompt). Initial images switch to the img2img pipeline,
which shares every module with the text-to-image one.

The autoencoder is the pipeline's own ``AutoencoderKL`` at ``lowlevel_size`` (default 256 px →
4×32×32 latents, multiplied by the VAE's scaling factor), always run in float32: SDXL's VAE
overflows in float16.

``config="tiny"`` (or a dict overriding the tiny sizes) builds the same pipeline classes from
tiny random-weight components, tokenizers included, plus a random IP-Adapter state dict loaded
through diffusers' own ``load_ip_adapter``; it is how the tests exercise this module offline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mindsight._torch_compat import ensure_torchvision
from mindsight.errors import WeightsUnavailableError
from mindsight.generate.base import GENERATORS, Autoencoder, Generator

IP_ADAPTER_REPO = "h94/IP-Adapter"
IP_ADAPTER_SUBFOLDER = "sdxl_models"
IP_ADAPTER_WEIGHT = "ip-adapter_sdxl_vit-h.safetensors"

# Sizes of the tiny random-weight pipeline (config="tiny"); a dict config overrides any of them.
TINY: dict[str, Any] = {
    "embedding_dim": 32,  # IP-Adapter input (the real one: 1024, ViT-H-14)
    "image_size": 64,
    "lowlevel_size": 64,
    "steps": 2,
    "unet_channels": (32, 64),
    "text_hidden": 32,  # each of the two text encoders; cross-attention dim = 2 × this
    "text_layers": 2,
    "max_tokens": 16,
    "vae_channels": (8, 8, 16, 16),  # 4 levels → 8× downsampling, like SDXL's VAE
    "seed": 0,  # of the random weights
}


class _DropEmptyFloat32Warning(logging.Filter):
    """diffusers warns on every ``model.to(dtype)`` even for models that keep no module in
    float32 ("... should be kept in float32: []"): on each img2img call and VAE upcast."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


def _quiet_dtype_warning() -> None:
    log = logging.getLogger("diffusers.models.modeling_utils")
    if not any(isinstance(f, _DropEmptyFloat32Warning) for f in log.filters):
        log.addFilter(_DropEmptyFloat32Warning())


@contextmanager
def _diffusers_errors_only() -> Iterator[None]:
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


@contextmanager
def _float32(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in float32 for the duration (SDXL's VAE is unstable in float16)."""
    dtype = next(module.parameters()).dtype
    if dtype != torch.float32:
        module.to(torch.float32)
    try:
        yield
    finally:
        if dtype != torch.float32:
            module.to(dtype)


class VaeAutoencoder(Autoencoder):
    """The pipeline's ``AutoencoderKL``: [0, 1] images ↔ scaled latents at ``image_size``."""

    def __init__(self, vae: nn.Module, image_size: int) -> None:
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if image_size % factor:
            raise ValueError(f"lowlevel_size {image_size} is not a multiple of the VAE's "
                             f"downsampling factor {factor}")
        self.vae = vae
        self.image_size = int(image_size)
        self.scaling_factor = float(vae.config.scaling_factor)
        side = self.image_size // factor
        self.latent_shape = (int(vae.config.latent_channels), side, side)

    def _device(self) -> torch.device:
        return next(self.vae.parameters()).device

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (n, 3, H, W), got {tuple(images.shape)}")
        x = images.to(self._device(), torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic",
                              align_corners=False, antialias=True)
        x = x.clamp(0, 1) * 2 - 1
        with torch.inference_mode(), _float32(self.vae):
            latents = self.vae.encode(x).latent_dist.mean  # deterministic: the posterior mean
        return (latents * self.scaling_factor).to(images.device)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected latents (n, {', '.join(map(str, self.latent_shape))}), "
                             f"got {tuple(latents.shape)}")
        z = latents.to(self._device(), torch.float32) / self.scaling_factor
        with torch.inference_mode(), _float32(self.vae):
            x = self.vae.decode(z).sample
        return ((x.float() + 1) / 2).clamp(0, 1).to(latents.device)


def _dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if dtype is None:
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float32": torch.float32, "fp32": torch.float32}[str(dtype)]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use float16, bfloat16 or float32") from None


class SdxlIpAdapter(Generator):
    """SDXL (base or Turbo) + IP-Adapter: image embeddings (+ captions, init images) → images.

    ``model_id``            diffusers SDXL pipeline: hub id or local folder.
    ``ip_adapter``          hub repo or local folder (with ``ip_adapter_subfolder`` /
                            ``ip_adapter_weight``), or a local ``.safetensors`` file.
    ``ip_adapter_scale``    weight of the image-embedding cross-attention (1.0).
    ``image_size``, ``steps``, ``guidance_scale``: defaults of ``generate``.
    ``negative_prompt``     None: diffusers' default (SDXL base: zero negative text embedding).
    ``lowlevel_size``       side of the autoencoder's images (256 → 4×32×32 latents).
    ``embedding_norm``      rescale every embedding to this L2 norm first (None: as given), for
                            brain-predicted embeddings on another scale than CLIP's raw ones.
    ``dtype``               default float16 on CUDA, float32 otherwise; ``variant`` e.g. "fp16"
                            to download the half-precision files.
    ``config``              "tiny" or a dict over ``TINY``: random tiny pipeline (tests).

    The registered generators are its subclasses :class:`SdxlBase` and :class:`SdxlTurbo`, whose
    ``load`` carries each model's defaults.
    """

    offline = False  # the pipeline and the IP-Adapter come from the Hugging Face hub
    weights_option = "model_id"  # `--weights` names the SDXL pipeline: hub id or local folder
    finetunes = False  # IP-Adapter conditioning is not re-fitted on brain embeddings

    def __init__(
        self, name: str, *, device: str = "cpu", config: str | dict | None = None,
        model_id: str, ip_adapter: str = IP_ADAPTER_REPO,
        ip_adapter_subfolder: str = IP_ADAPTER_SUBFOLDER,
        ip_adapter_weight: str = IP_ADAPTER_WEIGHT, ip_adapter_scale: float = 1.0,
        image_size: int | None = None, steps: int | None = None, guidance_scale: float = 5.0,
        negative_prompt: str | None = None, lowlevel_size: int | None = None,
        embedding_model: str = "clip-vit-h-14", embedding_norm: float | None = None,
        dtype: str | torch.dtype | None = None, variant: str | None = None,
    ) -> None:
        ensure_torchvision()  # before diffusers/transformers import torchvision
        _quiet_dtype_warning()
        self.name, self.device = name, str(device)
        self.embedding_model = embedding_model
        self.guidance_scale = float(guidance_scale)
        self.negative_prompt = negative_prompt
        self.embedding_norm = None if embedding_norm is None else float(embedding_norm)
        if config is not None:
            tiny = dict(TINY)
            if isinstance(config, dict):
                unknown = set(config) - set(TINY)
                if unknown:
                    raise ValueError(f"unknown tiny-config keys {sorted(unknown)}; "
                                     f"known: {sorted(TINY)}")
                tiny.update(config)
            elif config != "tiny":
                raise ValueError(f"config must be 'tiny', a dict of tiny sizes or None, "
                                 f"got {config!r}")
            self.model_id, self.ip_adapter = "tiny-random-sdxl", "tiny-random-ip-adapter"
            self.dtype = _dtype(dtype, self.device)
            pipe = _tiny_pipeline(tiny)
            self.image_size = int(image_size or tiny["image_size"])
            self.steps = int(steps or tiny["steps"])
            lowlevel = int(lowlevel_size or tiny["lowlevel_size"])
        else:
            self.model_id, self.dtype = str(model_id), _dtype(dtype, self.device)
            pipe = _pretrained_pipeline(name, self.model_id, self.dtype, variant)
            self.ip_adapter = _load_ip_adapter(name, pipe, ip_adapter, ip_adapter_subfolder,
                                               ip_adapter_weight)
            self.image_size = int(image_size or 1024)
            self.steps = int(steps or 30)
            lowlevel = int(lowlevel_size or 256)
        pipe.set_ip_adapter_scale(float(ip_adapter_scale))
        self.ip_adapter_scale = float(ip_adapter_scale)
        pipe.to(self.device, self.dtype)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self._img2img: Any = None
        proj = pipe.unet.encoder_hid_proj.image_projection_layers[0]
        self.embedding_dim = int(proj.image_embeds.in_features)
        self.autoencoder = VaeAutoencoder(pipe.vae, lowlevel)

    # -- generation ----------------------------------------------------------------------------

    @property
    def img2img(self) -> Any:
        """The img2img pipeline over the same modules (built on first use)."""
        if self._img2img is None:
            from diffusers import StableDiffusionXLImg2ImgPipeline

            scheduler = type(self.pipe.scheduler).from_config(self.pipe.scheduler.config)
            self._img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(self.pipe,
                                                                       scheduler=scheduler)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def _uses_cfg(self, guidance: float) -> bool:
        # the pipelines' own rule (do_classifier_free_guidance)
        return guidance > 1.0 and self.pipe.unet.config.time_cond_proj_dim is None

    def _ip_embeds(self, embeddings: torch.Tensor, cfg: bool) -> list[torch.Tensor]:
        """diffusers' ``ip_adapter_image_embeds`` for a batch of one prompt: a list with one
        tensor per IP-Adapter, (1, 1 image, d), preceded along dim 0 by the unconditional
        embedding (zeros, as diffusers' own encode_image gives) when guidance is on."""
        emb = embeddings.to(self.device, self.pipe.unet.dtype)[:, None, :]
        if cfg:
            emb = torch.cat([torch.zeros_like(emb), emb])
        return [emb]

    def generate(self, embeddings: torch.Tensor, *, init_images: torch.Tensor | None = None,
                 strength: float = 0.8, captions: Sequence[str] | None = None,
                 guidance_scale: float | None = None, steps: int | None = None,
                 seed: int = 0) -> torch.Tensor:
        """See ``Generator.generate``. Images come back as float32 on the CPU. With
        ``init_images`` and 0 < strength < 1, img2img runs ``int(steps * strength)`` denoising
        steps; ``steps`` is raised to ``ceil(1 / strength)`` when that would be zero."""
        emb = torch.as_tensor(embeddings).float()
        if emb.ndim != 2 or emb.shape[1] != self.embedding_dim:
            raise ValueError(f"{self.name} expects embeddings (n, {self.embedding_dim}) "
                             f"({self.embedding_model}), got {tuple(emb.shape)}")
        n = emb.shape[0]
        if captions is not None and len(captions) != n:
            raise ValueError(f"{len(captions)} captions for {n} embeddings")
        if init_images is not None:
            if init_images.ndim != 4 or init_images.shape[0] != n or init_images.shape[1] != 3:
                raise ValueError(f"init_images must be ({n}, 3, H, W), got "
                                 f"{tuple(init_images.shape)}")
            init = F.interpolate(init_images.float().cpu().clamp(0, 1),
                                 size=(self.image_size, self.image_size), mode="bicubic",
                                 align_corners=False, antialias=True).clamp(0, 1)
            if strength <= 0:
                return init
            if strength >= 1:
                init = None  # strength 1 ignores the initial images: plain text-to-image
        else:
            init = None
        if self.embedding_norm is not None:
            emb = emb * (self.embedding_norm / emb.norm(dim=1, keepdim=True).clamp_min(1e-12))
        guidance = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        n_steps = self.steps if steps is None else int(steps)
        if init is not None:  # img2img runs int(steps * strength) steps: keep at least one
            n_steps = max(n_steps, math.ceil(1 / strength))
        cfg = self._uses_cfg(guidance)
        prompts = [str(c) for c in captions] if captions is not None else [""] * n
        # One pipeline call per image. diffusers treats ip_adapter_image_embeds as shared by the
        # whole prompt batch: it tiles them batch-size times and every sample's IP attention then
        # sees all of them; per-image embeddings therefore need batches of one.
        out = []
        for i in range(n):
            kwargs: dict[str, Any] = dict(
                prompt=prompts[i], num_inference_steps=n_steps, guidance_scale=guidance,
                ip_adapter_image_embeds=self._ip_embeds(emb[i : i + 1], cfg),
                # seeded by (seed, index): image i does not depend on the others
                generator=torch.Generator("cpu").manual_seed(int(seed) * 1_000_003 + i),
                output_type="pt",
            )
            if self.negative_prompt is not None:
                kwargs["negative_prompt"] = self.negative_prompt
            with torch.inference_mode():
                if init is None:
                    images = self.pipe(height=self.image_size, width=self.image_size,
                                       **kwargs).images
                else:
                    images = self.img2img(image=init[i : i + 1].to(self.device),
                                          strength=float(strength), **kwargs).images
            out.append(images.float().clamp(0, 1).cpu())
        if not out:
            return torch.zeros(0, 3, self.image_size, self.image_size)
        return torch.cat(out)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _ip_adapter_module(self) -> nn.Module:
        from diffusers.models.attention_processor import (
            IPAdapterAttnProcessor,
            IPAdapterAttnProcessor2_0,
        )

        unet = self.pipe.unet
        procs = [p for p in unet.attn_processors.values()
                 if isinstance(p, IPAdapterAttnProcessor | IPAdapterAttnProcessor2_0)]
        return nn.ModuleDict({"image_proj": unet.encoder_hid_proj,
                              "attn_processors": nn.ModuleList(procs)})

    def modules(self) -> dict[str, nn.Module]:
        return {"unet": self.pipe.unet, "vae": self.pipe.vae,
                "text_encoder": self.pipe.text_encoder,
                "text_encoder_2": self.pipe.text_encoder_2,
                "ip_adapter": self._ip_adapter_module()}

    def parameter_counts(self) -> dict[str, int]:
        """Per part, without double counting: ``unet`` excludes the IP-Adapter's layers."""
        counts = super().parameter_counts()
        counts["unet"] -= counts["ip_adapter"]
        return counts

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_id": self.model_id, "ip_adapter": self.ip_adapter,
                "ip_adapter_scale": self.ip_adapter_scale, "steps": self.steps,
                "guidance_scale": self.guidance_scale, "negative_prompt": self.negative_prompt,
                "embedding_norm": self.embedding_norm, "dtype": str(self.dtype).split(".")[-1]}


# -- loading ---------------------------------------------------------------------------------


def _download_hint(repo: str, file: str | None = None) -> str:
    what = f"{repo} {file}" if file else repo
    return (f"Download it once on a machine with network access (`hf download {what}`, or "
            f"`huggingface-cli download {what}` with older huggingface_hub; it lands in the "
            "Hugging Face cache, HF_HOME) and copy the cache over")


def _pretrained_pipeline(name: str, model_id: str, dtype: torch.dtype,
                         variant: str | None) -> Any:
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import deprecation_utils

    # newer diffusers call it ``dtype`` (``torch_dtype`` still works, with a warning)
    key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    try:
        return StableDiffusionXLPipeline.from_pretrained(
            model_id, variant=variant, use_safetensors=True, **{key: dtype})
    except Exception as exc:  # hub/network/cache errors come in many types
        raise WeightsUnavailableError(
            f"generator {name!r} could not load the SDXL pipeline {model_id!r}: "
            f"{type(exc).__name__}: {str(exc).rstrip('. ')}. {_download_hint(model_id)}, or point "
            "model_id at a local diffusers folder (--set generator.model_id=/local/path)."
        ) from None


def _load_ip_adapter(name: str, pipe: Any, ip_adapter: str, subfolder: str,
                     weight: str) -> str:
    """Load the IP-Adapter (hub repo, local folder or local .safetensors file); its name."""
    source, weight_name = str(ip_adapter), weight
    if Path(source).is_file():
        weight_name = Path(source).name  # diffusers returns a file path as is
    try:
        with _diffusers_errors_only():  # "no image encoder loaded": intended
            pipe.load_ip_adapter(source, subfolder=subfolder, weight_name=weight_name,
                                 image_encoder_folder=None)
    except Exception as exc:
        where = source if Path(source).is_file() else f"{source}/{subfolder}/{weight_name}"
        raise WeightsUnavailableError(
            f"generator {name!r} could not load the IP-Adapter {where!r}: "
            f"{type(exc).__name__}: {str(exc).rstrip('. ')}. {_download_hint(source, f'{subfolder}/{weight_name}')}, "
            "or point ip_adapter at the local file (--set generator.ip_adapter="
            f"/local/path/{weight_name})."
        ) from None
    return source if Path(source).is_file() else f"{source}/{subfolder}/{weight_name}"


# -- tiny random pipeline (tests) ------------------------------------------------------------


def _tiny_tokenizer(max_tokens: int) -> Any:
    """A byte-level CLIP tokenizer with no merges: every byte is a token (no files needed)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = sorted(ByteLevel.alphabet())
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_tokens)


def _random_ip_adapter_state(unet: nn.Module, embedding_dim: int) -> dict[str, dict]:
    """A state dict shaped like ``ip-adapter_sdxl*.safetensors`` for ``unet`` (random values):
    ``image_proj`` (linear to 4 tokens + layer norm) and ``ip_adapter`` (to_k_ip/to_v_ip of
    every cross-attention layer, numbered 1, 3, 5, … in ``unet.attn_processors`` order)."""
    cross = int(unet.config.cross_attention_dim)
    channels = list(unet.config.block_out_channels)
    proj = torch.randn(4 * cross, embedding_dim) / math.sqrt(embedding_dim)
    # a non-zero bias, as trained ones have: without it the layer norm after the projection
    # would make the output blind to the embedding's scale
    image_proj = {"proj.weight": proj, "proj.bias": torch.randn(4 * cross),
                  "norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)}
    layers: dict[str, torch.Tensor] = {}
    key_id = 1
    for proc_name in unet.attn_processors:
        if proc_name.endswith("attn1.processor"):
            continue  # self-attention: no IP-Adapter layers
        if proc_name.startswith("mid_block"):
            hidden = channels[-1]
        elif proc_name.startswith("up_blocks"):
            hidden = channels[::-1][int(proc_name.split(".")[1])]
        else:
            hidden = channels[int(proc_name.split(".")[1])]
        for k in ("to_k_ip", "to_v_ip"):
            layers[f"{key_id}.{k}.weight"] = torch.randn(hidden, cross) / math.sqrt(cross)
        key_id += 2
    return {"image_proj": image_proj, "ip_adapter": layers}


@torch.no_grad()
def _calibrate_tiny_vae(vae: nn.Module, size: int) -> None:
    """Give a random VAE what training gives a real one, so that noise levels mean the same:
    a near-deterministic posterior (log-variance −10) and a scaling factor that brings latents
    to unit variance (how Stable Diffusion's 0.18215 / SDXL's 0.13025 were chosen)."""
    latent = int(vae.config.latent_channels)
    if vae.quant_conv is not None:
        vae.quant_conv.weight[latent:] = 0
        vae.quant_conv.bias[latent:] = -10.0
    x = torch.rand(4, 3, size, size) * 2 - 1
    std = float(vae.encode(x).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6))


def _tiny_pipeline(cfg: dict[str, Any]) -> Any:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    hidden, tokens = int(cfg["text_hidden"]), int(cfg["max_tokens"])
    unet_ch, vae_ch = tuple(cfg["unet_channels"]), tuple(cfg["vae_channels"])
    vae_factor = 2 ** (len(vae_ch) - 1)
    time_dim = 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["seed"]))
        unet = UNet2DConditionModel(
            sample_size=int(cfg["image_size"]) // vae_factor, in_channels=4, out_channels=4,
            block_out_channels=unet_ch, layers_per_block=1,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(unet_ch) - 1),
            up_block_types=("CrossAttnUpBlock2D",) * (len(unet_ch) - 1) + ("UpBlock2D",),
            attention_head_dim=tuple(max(1, c // 16) for c in unet_ch),
            use_linear_projection=True, norm_num_groups=min(8, *unet_ch),
            cross_attention_dim=2 * hidden, addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=6 * time_dim + hidden,
        )
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=vae_ch,
            down_block_types=("DownEncoderBlock2D",) * len(vae_ch),
            up_block_types=("UpDecoderBlock2D",) * len(vae_ch),
            layers_per_block=1, norm_num_groups=min(8, *vae_ch),
            sample_size=int(cfg["image_size"]), scaling_factor=0.13025, force_upcast=True,
        )
        _calibrate_tiny_vae(vae, int(cfg["image_size"]))
        text_cfg = CLIPTextConfig(
            vocab_size=514, hidden_size=hidden, intermediate_size=2 * hidden,
            num_hidden_layers=int(cfg["text_layers"]), num_attention_heads=max(1, hidden // 16),
            max_position_embeddings=tokens, projection_dim=hidden, hidden_act="gelu",
            bos_token_id=0, eos_token_id=1, pad_token_id=1,
        )
        text_encoder = CLIPTextModel(text_cfg).eval()
        text_encoder_2 = CLIPTextModelWithProjection(text_cfg).eval()
        ip_state = _random_ip_adapter_state(unet, int(cfg["embedding_dim"]))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(), text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=_tiny_tokenizer(tokens), tokenizer_2=_tiny_tokenizer(tokens),
        unet=unet.eval(), scheduler=scheduler, force_zeros_for_empty_prompt=True,
    )
    with _diffusers_errors_only():  # "no image encoder loaded": intended
        pipe.load_ip_adapter(ip_state, subfolder=None, weight_name=None,
                             image_encoder_folder=None)
    return pipe


# -- registry --------------------------------------------------------------------------------


@GENERATORS.register(
    "sdxl-ip-adapter",
    description="SDXL base 1.0 + IP-Adapter (ViT-H-14 image embeddings), img2img from the "
                "low-level image (ATM); 30 steps, guidance 5, 1024 px; needs the HF hub",
)
class SdxlBase(SdxlIpAdapter):
    """SDXL base 1.0 + IP-Adapter: ATM's stage II."""

    name = "sdxl-ip-adapter"

    @classmethod
    def load(cls, device: str = "cpu", config: str | dict | None = None,
             model_id: str = "stabilityai/stable-diffusion-xl-base-1.0",
             steps: int | None = None, guidance_scale: float = 5.0, image_size: int | None = None,
             **kwargs: Any) -> SdxlBase:
        return cls(cls.name, device=device, config=config, model_id=model_id, steps=steps,
                   guidance_scale=guidance_scale, image_size=image_size, **kwargs)


@GENERATORS.register(
    "sdxl-turbo-ip-adapter",
    description="SDXL-Turbo + IP-Adapter (ViT-H-14 image embeddings); 4 steps, no guidance, "
                "512 px; needs the HF hub",
)
class SdxlTurbo(SdxlIpAdapter):
    """SDXL-Turbo + IP-Adapter: few-step sampling without guidance."""

    name = "sdxl-turbo-ip-adapter"

    @classmethod
    def load(cls, device: str = "cpu", config: str | dict | None = None,
             model_id: str = "stabilityai/sdxl-turbo", steps: int | None = None,
             guidance_scale: float = 0.0, image_size: int | None = None,
             **kwargs: Any) -> SdxlTurbo:
        if config is None:
            steps, image_size = steps or 4, image_size or 512
        return cls(cls.name, device=device, config=config, model_id=model_id, steps=steps,
                   guidance_scale=guidance_scale, image_size=image_size, **kwargs)
