"""One global switch for progress bars (``set_progress`` / ``MINDSIGHT_PROGRESS``), and no
library function with a ``progress`` flag of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mindsight
from mindsight import output
from mindsight.output import (
    progress_bar,
    progress_callback,
    progress_enabled,
    progress_scope,
    set_progress,
)


@pytest.fixture
def switch(monkeypatch):
    """The switch at its default (no setting, no environment variable), restored afterwards."""
    monkeypatch.delenv(output.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(output, "_progress_setting", None)
    return monkeypatch


def test_bars_are_on_by_default(switch):
    assert progress_enabled()
    bar = progress_bar(range(3), desc="x")
    assert not bar.disable and list(bar) == [0, 1, 2]
    assert callable(progress_callback("x"))


def test_set_progress_false_hides_every_bar(switch):
    set_progress(False)
    assert not progress_enabled()
    assert progress_bar(range(3)).disable and progress_bar(total=5).disable
    assert list(progress_bar(range(3))) == [0, 1, 2], "a hidden bar still iterates"
    assert progress_callback("x") is None
    set_progress(None)  # back to the environment: on
    assert progress_enabled() and not progress_bar(total=1).disable


@pytest.mark.parametrize("value", ["0", "false", "No", " off "])
def test_environment_variable_hides_bars(switch, value):
    switch.setenv(output.PROGRESS_ENV, value)
    assert not progress_enabled()
    assert progress_bar(range(2)).disable
    assert progress_callback("x") is None
    set_progress(True)  # an explicit setting wins over the environment
    assert progress_enabled() and callable(progress_callback("x"))


def test_callback_draws_until_done(switch, capsys):
    update = progress_callback("caching", "row")
    for done in (2, 4, 5):
        update(done, 5)
    assert "caching" in capsys.readouterr().err


def test_scope_restores_the_setting(switch):
    with progress_scope(False):
        assert not progress_enabled()
        set_progress(True)
        assert progress_enabled()
    assert output._progress_setting is None and progress_enabled()
    set_progress(False)
    with progress_scope(True):
        assert not progress_enabled(), "enabled=True keeps what was in force"
    assert output._progress_setting is False


def _progress_parameters(path: Path) -> list[str]:
    """``file:line function`` of every function in ``path`` with a parameter named ``progress``,
    except the command line's ``--progress/--no-progress`` option (annotated ``Progress``),
    which sets the global switch and is passed to nothing."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        a = node.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is None or arg.arg != "progress":
                continue
            if isinstance(arg.annotation, ast.Name) and arg.annotation.id == "Progress":
                continue
            found.append(f"{path}:{node.lineno} {getattr(node, 'name', 'lambda')}")
    return found


def test_no_library_function_takes_a_progress_flag():
    root = Path(mindsight.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 20
    offenders = [hit for f in files for hit in _progress_parameters(f)]
    assert not offenders, ("bars follow mindsight.output's global switch; draw them with "
                           f"progress_bar / progress_callback instead of a `progress` parameter: {offenders}")


def test_the_static_check_finds_a_progress_parameter(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x, *, progress: bool = True):\n    pass\n"
                   "def g(progress: Progress = None):\n    pass\n")
    assert _progress_parameters(bad) == [f"{bad}:1 f"]
