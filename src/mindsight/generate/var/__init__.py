"""VAR (Tian et al., NeurIPS 2024): next-scale prediction over a multi-scale VQ tokenizer,
conditioned on an image embedding as AVDE does (its class embedding replaced by a Linear map).

- :mod:`~mindsight.generate.var.tokenizer`: :class:`TokenizerConfig`, :class:`MultiScaleVQVAE`;
- :mod:`~mindsight.generate.var.transformer`: :class:`VARConfig`, :class:`VARTransformer`;
- :mod:`~mindsight.generate.var.sampling`: guidance mix and top-k / top-p sampling;
- :mod:`~mindsight.generate.var.img2img`: the tokenizer latent as the low-level target, and the
  scales img2img keeps (shared by ``builtin-var`` and ``var-d16``);
- :mod:`~mindsight.generate.var.official`: the official ``vae_ch160v4096z32.pth`` and
  ``var_d16.pth`` state dicts into these modules.
"""

from mindsight.generate.var.tokenizer import MultiScaleVQVAE, TokenizerConfig
from mindsight.generate.var.transformer import VARConfig, VARTransformer

__all__ = ["MultiScaleVQVAE", "TokenizerConfig", "VARConfig", "VARTransformer"]
