"""The analysis registry: a new analysis is one class and one registry line, and appears as
``mindsight analyze NAME`` with options built from its ``Options`` dataclass."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from test_cli import run, run_main
from test_run_api import trained  # noqa: F401  (the module fixture: a trained tiny run)

from mindsight.analysis import ANALYSES, Analysis, Mode, Summary, analysis_names
from mindsight.errors import ConfigError, ContractError
from mindsight.run import Run

pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(Analysis):
    """Top-1 of the first fold's model, times a factor (a stand-in for a real analysis)."""

    name = "toy"
    description = "A toy analysis: the first fold's top-1 times --scale."

    @dataclass
    class Options:
        scale: float = field(default=1.0, metadata={"help": "Multiply the top-1 by this factor."})
        label: str = field(default="plain", metadata={"help": "A name written into the result."})
        mode: Mode = field(default=Mode.mask, metadata={"help": "Any mode (echoed)."})
        repeats: int | None = field(default=None, metadata={"help": "Optional count (echoed)."})

    def compute(self, run: Run, options: Options) -> dict:
        from mindsight.evaluate.retrieval import retrieval_metrics
        from mindsight.train.data import trial_tensors

        fold = run.folds[0]
        model, targets = run.model(fold), run.image_targets(fold)
        t = trial_tensors(run.recording(fold.test_subject, "test").average_repetitions(), len(targets))
        emb, _ = model.embed(t.x, t.subject)
        top1 = retrieval_metrics(emb, targets, t.image, k_ways=())["top1"]
        return {"analysis": "toy", "label": options.label, "mode": str(options.mode),
                "repeats": options.repeats, "top1": top1, "score": options.scale * top1}

    def figure(self, run: Run, result: dict, path):
        from mindsight.plotting import pyplot, save_figure

        fig, ax = pyplot().subplots(figsize=(2, 2))
        ax.bar([0], [result["score"]])
        return save_figure(fig, path)

    def summary(self, result: dict) -> Summary:
        return Summary(title="toy scores", columns=["label", "score"],
                       rows=[{"label": result["label"], "score": f"{result['score']:.3f}"}],
                       lines=[f"toy done ({result['mode']})"])


@pytest.fixture
def toy():
    """``Toy`` registered for one test, then removed from the registry again."""
    ANALYSES.register("toy")(Toy)
    try:
        yield Toy
    finally:
        ANALYSES._entries.pop("toy", None)


def test_builtin_analyses_are_registered_with_their_options():
    assert analysis_names()[:3] == ["repetitions", "temporal", "spatial"]
    out = run("analyze", "--help").output
    for name in ("repetitions", "temporal", "spatial", "sliding and growing time windows"):
        assert name in out
    out = run("analyze", "temporal", "--help").output
    for flag in ("--mode", "mask|retrain", "--length", "--permutations", "--tmin", "--encoder", "--seed",
                 "--device", "auto|cpu|cuda", "--no-progress", "--cache-dir", "RUN_DIR"):
        assert flag.lower() in out.lower(), flag
    assert "[epoch start]" in out  # help text from the Options field's metadata, brackets kept


def test_a_registered_analysis_becomes_a_command(toy, trained, tmp_path):  # noqa: F811
    path, cache = trained
    assert "toy" in analysis_names()
    out = run("analyze", "--help").output
    assert "toy" in out and "the first fold's top-1 times --scale" in out
    out = run("analyze", "toy", "--help").output
    assert "--scale" in out and "Multiply the top-1 by this factor." in out and "mask|retrain" in out
    result = run("analyze", "toy", path, "--scale", 2, "--label", "doubled", "--mode", "retrain",
                 "--repeats", 3, "--device", "cpu", "--cache-dir", cache, "--no-progress")
    assert result.exit_code == 0, result.output
    saved = json.loads((path / "analysis" / "toy.json").read_text())
    assert saved["label"] == "doubled" and saved["mode"] == "retrain" and saved["repeats"] == 3
    assert saved["score"] == pytest.approx(2 * saved["top1"]) and 0 < saved["top1"] <= 1
    assert (path / "analysis" / "toy.png").stat().st_size > 500
    assert "toy scores" in result.output and "doubled" in result.output and "toy done (retrain)" in result.output
    assert "toy.json" in result.output and "toy.png" in result.output
    # the Python API gives the same result with the defaults
    plain = Toy().run(Run.open(path, device="cpu", cache_dir=cache))
    assert plain["score"] == pytest.approx(saved["top1"]) and plain["label"] == "plain"
    assert run("analyze", "toy", path, "--mode", "sideways").exit_code == 2  # not a Mode


def test_an_unregistered_analysis_is_not_a_command(tmp_path, capsys):
    assert "toy" not in analysis_names()
    assert run_main("analyze", "toy", tmp_path) == 2
    assert "No such command 'toy'" in capsys.readouterr().err


def test_the_contract_is_checked_at_registration():
    class NoOptions(Analysis):
        name, description = "no-options", "x"

        def compute(self, run, options):
            return {}

        def figure(self, run, result, path):
            return path

    with pytest.raises(ContractError, match="does not declare Options"):
        ANALYSES.register("no-options")(NoOptions)

    @dataclass
    class Clashing:
        device: str = "cpu"

    NoOptions.Options = Clashing
    with pytest.raises(ContractError, match="Options.device: every analysis already has run_dir, device"):
        ANALYSES.register("no-options")(NoOptions)

    @dataclass
    class Required:
        draws: int

    NoOptions.Options = Required
    with pytest.raises(ContractError, match="Options.draws has no default"):
        ANALYSES.register("no-options")(NoOptions)
    assert "no-options" not in ANALYSES


def test_builtin_options_check_their_mode():
    from mindsight.analysis import Spatial, Temporal

    assert Temporal.Options(mode="retrain").mode is Mode.retrain
    with pytest.raises(ConfigError, match="unknown spatial analysis mode 'sideways'; use 'mask' or 'retrain'"):
        Spatial.Options(mode="sideways")
