"""The registry's contract checks: a class missing a declared capability fails when registered."""

from __future__ import annotations

import abc
from typing import ClassVar

import pytest

from mindsight.errors import ContractError, UnknownNameError
from mindsight.registry import Contract, Registry


class Base(Contract, abc.ABC):
    declares: ClassVar[tuple[str, ...]] = ("flavour",)
    flavour: ClassVar[str | None] = None

    @abc.abstractmethod
    def run(self) -> int: ...


def test_a_complete_class_registers_and_is_found():
    reg: Registry[Base] = Registry("thing", base=Base)

    @reg.register("good")
    class Good(Base):
        """A good thing."""
        flavour = "sweet"

        def run(self) -> int:
            return 1

    assert reg.get("good") is Good and reg.entry("good").description == "A good thing."
    assert reg.build("good").run() == 1 and "good" in reg and len(reg) == 1
    with pytest.raises(UnknownNameError, match="available: good"):
        reg.entry("bad")


def test_missing_capability_abstract_method_or_base_fail_at_registration():
    reg: Registry[Base] = Registry("thing", base=Base)
    with pytest.raises(ContractError, match="does not declare flavour"):
        @reg.register("no-flavour")
        class NoFlavour(Base):
            def run(self) -> int:
                return 1
    with pytest.raises(ContractError, match="does not implement run"):
        @reg.register("no-run")
        class NoRun(Base):
            flavour = "sour"
    with pytest.raises(ContractError, match="not a subclass of Base"):
        reg.register("plain")(lambda: None)
    assert reg.names() == []

    @reg.register("twice")
    class Twice(Base):
        flavour = "x"

        def run(self) -> int:
            return 2
    with pytest.raises(ContractError, match="registered twice"):
        reg.register("twice")(Twice)


def test_a_class_stating_its_name_is_registered_under_it():
    reg: Registry[Base] = Registry("thing", base=Base)

    class Named(Base):
        name = "named"
        flavour = "x"

        def run(self) -> int:
            return 3
    with pytest.raises(ContractError, match="has name 'named'; register it under its own name"):
        reg.register("other")(Named)
    assert reg.register("named")(Named) is Named


def test_a_load_hook_fills_the_registry_on_first_lookup_only():
    calls = []

    def load(registry: Registry[Base]) -> None:
        calls.append(len(registry.names()))  # a lookup inside the hook does not run it again

        @registry.register("late")
        class Late(Base):
            flavour = "x"

            def run(self) -> int:
                return 4
    reg: Registry[Base] = Registry("thing", base=Base, load=load)
    assert calls == [] and reg.names() == ["late"] and "late" in reg and len(reg) == 1
    assert calls == [0]


def test_a_failing_load_hook_is_raised_again_at_the_next_lookup():
    def load(registry: Registry[Base]) -> None:
        raise ImportError("broken entry")
    reg: Registry[Base] = Registry("thing", base=Base, load=load)
    for _ in range(2):
        with pytest.raises(ImportError, match="broken entry"):
            reg.names()
