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
