"""Embedding backends; importing this package registers them all in ``EMBEDDERS``."""

from mindsight.embed.backends import dinov2, efficientnet, evnet, minilm, openclip  # noqa: F401
