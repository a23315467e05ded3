"""Image and text embeddings: a registry of backends, cached feature tables, anchor imports."""

from mindsight.embed.base import (
    DEFAULT_IMAGE_MODEL,
    DEFAULT_TEMPLATE,
    DEFAULT_TEXT_MODEL,
    EMBEDDERS,
    ImageEmbedder,
    TextEmbedder,
    image_embedder_names,
    load_embedder,
    load_image_embedder,
    load_text_embedder,
    text_embedder_names,
)
from mindsight.embed.features import (
    FeatureTable,
    image_features,
    optional_text_features,
    text_features,
)

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_TEMPLATE",
    "DEFAULT_TEXT_MODEL",
    "EMBEDDERS",
    "FeatureTable",
    "ImageEmbedder",
    "TextEmbedder",
    "image_embedder_names",
    "image_features",
    "load_embedder",
    "load_image_embedder",
    "load_text_embedder",
    "optional_text_features",
    "text_embedder_names",
    "text_features",
]
