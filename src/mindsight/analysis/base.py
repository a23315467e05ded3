"""What every analysis of a trained run is, and the analysis registry.

An analysis is one class in one file, registered with one line::

    @ANALYSES.register("mine")
    class Mine(Analysis):
        name = "mine"
        description = "What it shows, in one line."

        @dataclass
        class Options:
            draws: int = field(default=10, metadata={"help": "Random draws."})

        def compute(self, run, options):      # -> a JSON-able dict
            ...
        def figure(self, run, result, path):  # -> the PNG written
            ...

``Analysis.run`` writes ``RUN_DIR/analysis/<name>.json`` and ``<name>.png``; ``mindsight analyze
mine RUN_DIR --draws 3`` exists from then on: the command line builds each subcommand's options
from ``Options`` (field name → ``--flag``, type, default, ``metadata["help"]``).
"""

from __future__ import annotations

import abc
import dataclasses
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from mindsight._atomic import write_json
from mindsight.errors import ConfigError, ContractError
from mindsight.registry import Contract, Registry, import_modules

if typing.TYPE_CHECKING:
    from mindsight.run import Run

# the options every ``mindsight analyze`` subcommand has; an Options field may not reuse them
COMMON_OPTIONS = ("run_dir", "device", "cache_dir", "progress")


class Mode(StrEnum):
    """How an analysis tests a part of the data (a time window, a brain region)."""

    mask = "mask"  # evaluation only: the run's selected model, the rest of the input neutralised
    retrain = "retrain"  # a fresh model per part, fitted on that part of the training data


MODES = tuple(m.value for m in Mode)


def mode_option(default: Mode = Mode.mask, what: str = "part") -> Any:
    """An ``Options`` field for :class:`Mode` (a plain string is accepted and checked)."""
    return field(default=default, metadata={
        "help": f"'mask' (evaluation only) or 'retrain' (a model per {what})."})


def check_mode(value: Any, analysis: str) -> Mode:
    """``value`` as a :class:`Mode`; an unknown one raises :class:`ConfigError` naming both."""
    try:
        return Mode(value)
    except ValueError:
        raise ConfigError(f"unknown {analysis} analysis mode {value!r}; use "
                          f"{' or '.join(repr(m) for m in MODES)}") from None


@dataclass
class Summary:
    """What the command line prints after an analysis: an optional table, then lines."""

    title: str | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


class Analysis(Contract, abc.ABC):
    """An analysis of a trained run: ``compute`` its result, draw its ``figure``.

    Declared by every subclass: ``name`` (the registry and file name), ``description`` (one
    line, shown by ``mindsight analyze --help``) and ``Options`` (a dataclass of its parameters,
    each with a default and ``metadata={"help": ...}``).
    """

    declares: ClassVar[tuple[str, ...]] = ("name", "description", "Options")
    name: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    Options: ClassVar[type | None] = None

    @classmethod
    def check_contract(cls) -> None:
        super().check_contract()
        where = f"{cls.__module__}.{cls.__qualname__}"
        if not dataclasses.is_dataclass(cls.Options):
            raise ContractError(f"{where}.Options must be a dataclass (its fields are the options)")
        for f in dataclasses.fields(cls.Options):
            if f.name in COMMON_OPTIONS:
                raise ContractError(f"{where}.Options.{f.name}: every analysis already has "
                                    f"{', '.join(COMMON_OPTIONS)}; use another name")
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ContractError(f"{where}.Options.{f.name} has no default (every option needs one)")

    @classmethod
    def option_types(cls) -> dict[str, Any]:
        """Each option's type, with string annotations resolved."""
        import sys

        module = sys.modules.get(cls.Options.__module__)
        return typing.get_type_hints(cls.Options, vars(module) if module else None)

    @abc.abstractmethod
    def compute(self, run: Run, options: Any) -> dict[str, Any]:
        """The analysis' result (JSON-able) for ``run`` with ``options`` (an ``Options``)."""

    @abc.abstractmethod
    def figure(self, run: Run, result: dict[str, Any], path: Path) -> Path:
        """Draw ``result`` to ``path`` (PNG) and return it."""

    def summary(self, result: dict[str, Any]) -> Summary:
        """What the terminal shows of ``result`` (default: nothing beyond the output paths)."""
        return Summary()

    def outputs(self, run_dir: Path) -> tuple[Path, Path]:
        """(JSON, figure) this analysis writes for the run in ``run_dir``."""
        out = Path(run_dir) / "analysis"
        return out / f"{self.name}.json", out / f"{self.name}.png"

    def run(self, run: Run, options: Any = None, **changes: Any) -> dict[str, Any]:
        """Compute on ``run`` with ``options`` (default: ``Options()``; ``changes`` replace single
        fields), write ``RUN_DIR/analysis/<name>.json`` and the figure, return the result."""
        options = self.Options() if options is None else options
        if not isinstance(options, self.Options):
            raise ConfigError(f"analysis {self.name!r} takes {self.Options.__qualname__} options, "
                              f"got {type(options).__name__}")
        if changes:
            options = dataclasses.replace(options, **changes)
        result = self.compute(run, options)
        json_path, figure_path = self.outputs(run.path)
        write_json(json_path, result)
        self.figure(run, result, figure_path)
        return result


ANALYSES: Registry[Analysis] = Registry("analysis", base=Analysis, load=import_modules("mindsight.analysis"))


def analysis_names() -> list[str]:
    """The registered analyses."""
    return ANALYSES.names()


def get_analysis(name: str) -> Analysis:
    """An instance of the analysis registered as ``name``; an unknown name lists the known ones."""
    return ANALYSES.get(name)()
