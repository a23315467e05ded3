"""Modalities: the kinds of target a multimodal model aligns the brain with, and their levels.

CognitionCapturer(Pro) aligns one EEG/MEG trial with four views of its stimulus at once: the
picture, its concept's text, its depth map and its edge map. In mindsight each modality is a
recipe for feature-table *levels* (:mod:`mindsight.embed.features`):

============  ======  ======================================================================
modality      kind    levels (``im``: the image model, ``tm``: the text model)
============  ======  ======================================================================
``image``     image   ``im@sharp``; with uncertainty ``im@foveated-k45``, ``im@foveated``,
                      ``im@foveated-k57`` (UBP's low / medium / high blur)
``edge``      image   ``im@edge``; with uncertainty ``im@edge+foveated-k45`` … (the same
                      three blurs of the edge map)
``depth``     image   ``im@depth`` (``im@depth=MODEL`` for another depth model); with
                      uncertainty its three blurs
``text``      text    ``tm@text`` (the concept name, ``This picture is {}``); no blur levels
============  ======  ======================================================================

Image-kind modalities go through the image model; the text modality through the text model.
With uncertainty the model picks one of the three blur levels per training sample; evaluation
uses the medium one (:func:`eval_level`), as UBP and CognitionCapturerPro's test set do.

:func:`modality_tables` builds the tables of several modalities, skipping (with a note) a
modality whose weights cannot be had here (the depth model offline), so a run without them
still trains on the others. Any other error stops.

Adding a modality: one :class:`Modality` subclass stating ``kind`` and ``description`` and
implementing :meth:`Modality.levels`, and one ``@MODALITIES.register`` line.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import ClassVar

from mindsight.embed.depth import DEFAULT_DEPTH_MODEL
from mindsight.embed.features import TEXT_LEVEL, FeatureTable, level_tables
from mindsight.embed.views import STACKS, canonical
from mindsight.errors import ContractError, WeightsUnavailableError
from mindsight.io.images import ImagePartition
from mindsight.output import logger
from mindsight.registry import Contract, Registry

KINDS = ("image", "text")
UBP_LEVELS = tuple(canonical(v) for v in STACKS["ubp"])  # low, medium, high blur
MEDIUM = 1  # index of the medium blur level: the one evaluated


class Modality(Contract, abc.ABC):
    """One kind of target: which levels it aligns with. A subclass states ``kind`` ('image':
    embedded by the image model; 'text': by the text model) and ``description``, and implements
    :meth:`levels`. Options (``depth_model``) are constructor keywords every modality takes and
    ignores unless they concern it."""

    declares: ClassVar[tuple[str, ...]] = ("kind", "description")
    kind: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    blurred: ClassVar[bool] = True  # whether uncertainty gives it the three blur levels

    def __init__(self, *, depth_model: str | None = None) -> None:
        self.depth_model = depth_model

    @abc.abstractmethod
    def levels(self, image_model: str, text_model: str, uncertainty: bool) -> list[str]:
        """The level names (``model@view`` / ``model@text``) of this modality, in order; with
        ``uncertainty`` the low / medium / high blur levels where the modality has them."""

    def eval_level(self, uncertainty: bool) -> int:
        """Index (into :meth:`levels`) of the level evaluation uses: the medium blur when there
        are blur levels, else the only one."""
        return MEDIUM if uncertainty and self.blurred else 0

    @classmethod
    def check_contract(cls) -> None:
        super().check_contract()
        if cls.kind not in KINDS:
            raise ContractError(f"{cls.__module__}.{cls.__qualname__}: kind {cls.kind!r} is not one "
                                f"of {', '.join(KINDS)}")


class ViewModality(Modality):
    """An image-kind modality: the image model through a base view (``sharp``, ``edge``,
    ``depth``), or with uncertainty through that view then each UBP blur."""

    kind = "image"

    @abc.abstractmethod
    def view(self) -> str:
        """The base view's name (a spec :func:`~mindsight.embed.views.get_view` parses)."""

    def levels(self, image_model: str, text_model: str, uncertainty: bool) -> list[str]:
        base = self.view()
        if not uncertainty:
            return [f"{image_model}@{base}"]
        return [f"{image_model}@{v if base == 'sharp' else f'{base}+{v}'}" for v in UBP_LEVELS]


MODALITIES: Registry[Modality] = Registry("modality", base=Modality)


@MODALITIES.register("image")
class ImageModality(ViewModality):
    description = "the picture, through the image model"

    def view(self) -> str:
        return "sharp"


@MODALITIES.register("edge")
class EdgeModality(ViewModality):
    description = "Canny edge map of the picture (view edge), through the image model"

    def view(self) -> str:
        return "edge"


@MODALITIES.register("depth")
class DepthModality(ViewModality):
    description = f"INFERNO-coloured depth map (view depth; {DEFAULT_DEPTH_MODEL} unless depth_model), through the image model"

    def view(self) -> str:
        model = self.depth_model
        return "depth" if not model or model == DEFAULT_DEPTH_MODEL else f"depth={model}"


@MODALITIES.register("text")
class TextModality(Modality):
    kind = "text"
    description = "the concept name ('This picture is {}'), through the text model"
    blurred = False

    def levels(self, image_model: str, text_model: str, uncertainty: bool) -> list[str]:
        return [f"{text_model}@{TEXT_LEVEL}"]


def get_modality(name: str, *, depth_model: str | None = None) -> Modality:
    """The modality called ``name`` with its options; an unknown name lists the known ones."""
    return MODALITIES.build(name, depth_model=depth_model)


def modality_levels(names: Sequence[str], image_model: str, text_model: str, uncertainty: bool,
                    *, depth_model: str | None = None) -> dict[str, list[str]]:
    """Each modality's level names, in the order of ``names``."""
    return {n: get_modality(n, depth_model=depth_model).levels(image_model, text_model, uncertainty)
            for n in names}


def eval_level(name: str, uncertainty: bool) -> int:
    """Index of the level of modality ``name`` that evaluation uses (1, the medium blur, for
    image-kind modalities with uncertainty; else 0)."""
    return get_modality(name).eval_level(uncertainty)


def modality_tables(
    partition: ImagePartition,
    names: Sequence[str],
    image_model: str,
    text_model: str,
    uncertainty: bool = False,
    cache_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    depth_model: str | None = None,
) -> tuple[dict[str, list[FeatureTable]], dict[str, str]]:
    """The feature tables of each modality's levels (rows in ``partition``'s image order), and
    a note per modality skipped because its weights cannot be had here (logged as well). Only
    :class:`WeightsUnavailableError` skips; every other error stops."""
    tables: dict[str, list[FeatureTable]] = {}
    notes: dict[str, str] = {}
    for name, levels in modality_levels(names, image_model, text_model, uncertainty,
                                        depth_model=depth_model).items():
        try:
            tables[name] = level_tables(partition, levels, cache_dir=cache_dir, device=device)
        except WeightsUnavailableError as exc:
            notes[name] = f"modality {name!r} skipped: {exc}"
            logger.info(notes[name])
    return tables, notes


def modality_rows() -> list[dict[str, str]]:
    """One row per modality (name, kind, levels, description), as ``mindsight models`` lists
    them; levels shown for image model ``im`` and text model ``tm``."""
    rows = []
    for entry in MODALITIES:
        mod = entry.factory()
        plain = ", ".join(mod.levels("im", "tm", False))
        blurred = ", ".join(mod.levels("im", "tm", True))
        rows.append({"name": entry.name, "kind": mod.kind,
                     "levels": plain if plain == blurred else f"{plain}; uncertainty: {blurred}",
                     "description": entry.description})
    return rows


def modality_names() -> list[str]:
    """The registered modalities, in registration order."""
    return MODALITIES.names()
