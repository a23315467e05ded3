"""Registries: a name → class (or factory) table per kind of extension, and the contracts the
registered classes must keep.

Every kind of extension (brain encoder, dataset, image view, image side, generator, analysis) is
one file holding one class, and one line registering it. A registry made with ``base=`` checks
the class when it is registered, so a class missing a declared capability fails at import, not
halfway through a run:

* it must subclass ``base``;
* it must set every name in ``base.declares`` (the capabilities each subclass states, e.g.
  ``closed_form`` of an encoder) in its own class body or a parent's, not just inherit ``None``;
* it must implement every abstract method of ``base``;
* a class that states its ``name`` must state the name it is registered under.

A registry whose entries register themselves when their modules are imported takes a ``load``
hook (:func:`import_modules`, or :func:`from_table` for a ``name → "module:Class"`` table): it
runs the first time the registry is consulted, so importing a registry never imports its
entries' heavy dependencies, and no caller has to remember to import them first.

Every failed lookup lists the available names, so a typo on the command line is a one-step fix.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from mindsight.errors import ContractError, UnknownNameError

T = TypeVar("T")


class Contract:
    """Mixin of the base classes of registered extensions.

    ``declares`` lists the class attributes every registered subclass must set (to any value but
    ``None``); ``check_contract`` raises :class:`ContractError` naming what is missing. Subclasses
    of a base can add their own checks by overriding ``check_contract`` (calling ``super()``).
    """

    declares: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def check_contract(cls) -> None:
        missing = [name for name in cls.declares if getattr(cls, name, None) is None]
        if missing:
            raise ContractError(
                f"{cls.__module__}.{cls.__qualname__} does not declare {', '.join(missing)} "
                f"(every registered {_base_name(cls)} must set these class attributes)")
        if inspect.isabstract(cls):
            names = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
            raise ContractError(
                f"{cls.__module__}.{cls.__qualname__} does not implement {names} "
                f"(abstract in {_base_name(cls)})")


def _base_name(cls: type) -> str:
    for base in cls.__mro__[1:]:
        if Contract in base.__bases__:
            return base.__name__
    return "extension"


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Maps short names to classes or factories. ``kind`` names what is registered, for error
    messages; with ``base`` every registered object must be a subclass of it that keeps its
    contract (:class:`Contract`)."""

    def __init__(self, kind: str, base: type | None = None, *,
                 load: Callable[[Registry[T]], None] | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[T]] = {}
        self._load = load
        self._loaded = load is None
        self._loading = False

    def _ensure_loaded(self) -> None:
        """Run the ``load`` hook once, before the first lookup (not again while it runs, and
        again next time if it failed, so a broken entry is raised, not left half-registered)."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            self._load(self)  # type: ignore[misc]
            self._loaded = True
        finally:
            self._loading = False

    def register(
        self, name: str, *, description: str = "", **tags: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name", description=...)`` over a class or factory.
        Without ``description``, the class's ``description`` attribute or its docstring's first
        line is used."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ContractError(f"{self.kind} {name!r} is registered twice")
            self.check(name, factory)
            stated = getattr(factory, "description", None)
            desc = description or (stated if isinstance(stated, str) else _first_line(factory.__doc__))
            self._entries[name] = Entry(name, factory, desc, dict(tags))
            return factory

        return deco

    def check(self, name: str, obj: Any) -> None:
        """Raise :class:`ContractError` unless ``obj`` may be registered as ``name``."""
        if self.base is None:
            return
        if not (inspect.isclass(obj) and issubclass(obj, self.base)):
            raise ContractError(
                f"{self.kind} {name!r}: {obj!r} is not a subclass of {self.base.__name__}; "
                f"every {self.kind} is a {self.base.__name__} subclass")
        check = getattr(obj, "check_contract", None)
        if check is not None:
            check()
        declared = getattr(obj, "name", None)
        if isinstance(declared, str) and declared != name:
            raise ContractError(f"{self.kind} {name!r}: {obj.__module__}.{obj.__qualname__} has name "
                                f"{declared!r}; register it under its own name")

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def get(self, name: str) -> Callable[..., T]:
        """The registered class (or factory) of ``name``; an unknown name lists the known ones."""
        return self.entry(name).factory

    def build(self, name: str, **kwargs: Any) -> T:
        return self.entry(name).factory(**kwargs)

    def names(self, **tags: Any) -> list[str]:
        """Registered names, optionally only those whose tags match ``tags``."""
        self._ensure_loaded()
        return [
            n
            for n, e in self._entries.items()
            if all(e.tags.get(k) == v for k, v in tags.items())
        ]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._ensure_loaded()
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)


def import_modules(*modules: str) -> Callable[[Registry[Any]], None]:
    """A ``load`` hook importing ``modules``, whose classes register themselves on import."""

    def load(_: Registry[Any]) -> None:
        for module in modules:
            importlib.import_module(module)

    return load


def from_table(table: dict[str, str]) -> Callable[[Registry[Any]], None]:
    """A ``load`` hook registering the classes of a ``name → "module:Class"`` table (each
    checked like any registration, its ``name`` included)."""

    def load(registry: Registry[Any]) -> None:
        for name, target in table.items():
            if name not in registry._entries:
                module, _, attr = target.partition(":")
                registry.register(name)(getattr(importlib.import_module(module), attr))

    return load


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n", 1)[0].strip()
