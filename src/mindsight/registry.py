"""A small name → constructor registry, shared by embedders and (later) brain encoders.

Every failed lookup lists the available names, so a typo on the command line is a one-step fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mindsight.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    description: str = ""
    tags: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Maps short names to factories. ``kind`` names what is registered, for error messages."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, description: str = "", **tags: Any
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: ``@REGISTRY.register("name", description=...)`` over a factory."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, factory, description, dict(tags))
            return factory

        return deco

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> T:
        return self.entry(name).factory(**kwargs)

    def names(self, **tags: Any) -> list[str]:
        """Registered names, optionally only those whose tags match ``tags``."""
        return [
            n
            for n, e in self._entries.items()
            if all(e.tags.get(k) == v for k, v in tags.items())
        ]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())
