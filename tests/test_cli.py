import json
import logging

import numpy as np
import pytest
import torch
from layouts import (
    write_image_set,
    write_nice_atm,
    write_official,
    write_package_layout,
    write_raw_release,
)
from typer.testing import CliRunner

from mindsight.cli import app

runner = CliRunner()
COMMANDS = ["info", "cache", "preprocess", "embed", "import-features", "models", "doctor", "train",
            "evaluate", "simulate", "demo", "reconstruct", "evaluate-reconstruction", "train-generator", "analyze"]


def run(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False, terminal_width=200)
    return result


def run_main(*args, capsys=None):
    """Through main(), as the console script: MindsightError → exit code 2 and one line."""
    import sys

    from mindsight.cli import main

    argv = sys.argv
    sys.argv = ["mindsight", *map(str, args)]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = argv
    return exc.value.code


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


def test_info_on_every_layout(tmp_path):
    write_official(tmp_path / "official", subject=1)
    write_nice_atm(tmp_path / "nice", subject=2, n_train=10)
    write_package_layout(tmp_path / "package", subject=3)
    write_raw_release(tmp_path / "raw", n_sessions=1, n_train=2, n_test=1)
    write_image_set(tmp_path / "Image_set")
    torch.save({"img_features": torch.zeros(30, 4)}, tmp_path / "ViT-H-14_features_train.pt")
    result = run("info", *(tmp_path / d for d in ("official", "nice", "package", "raw", "Image_set")),
                 tmp_path / "ViT-H-14_features_train.pt")
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("official", "nice-atm", "things-eeg2-dataset", "things-eeg2-raw", "things-images",
                     "anchor-features", "[30, 4, 17, 100]", "[10, 4, 63, 250]", "sub-01", "sub-02", "sub-03",
                     "250.0", "disjoint"):
        assert expected in out, expected
    js = json.loads(run("info", "--json", tmp_path / "official").output)
    assert js[0]["layout"] == "official" and js[0]["subjects"] == [1]
    row = js[0]["rows"][1]
    assert row["partition"] == "train" and row["concepts"] == 3 and row["tmin"] == -0.2


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_main("info", tmp_path / "empty") == 2
    err = capsys.readouterr().err
    assert "error:" in err and "no recognised layout" in err and "Traceback" not in err
    assert run_main("info", tmp_path / "missing") == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert run_main("embed", "--images", tmp_path / "x", "--image-model", "nope") == 2


def test_cache_command(tmp_path, cache_dir):
    write_official(tmp_path / "eeg")
    write_image_set(tmp_path / "img")
    result = run("cache", tmp_path / "eeg", "--images", tmp_path / "img")
    assert result.exit_code == 0, result.output
    assert "120 trials × 17 ch × 100 times" in result.output
    assert len(list((cache_dir / "arrays").iterdir())) == 2


def test_preprocess_command(tmp_path):
    write_raw_release(tmp_path / "raw", n_sessions=2, n_train=4, n_test=2)
    result = run("preprocess", tmp_path / "raw", "--out", tmp_path / "out", "--reps-train", 2,
                 "--reps-test", 3, "--mvnn", "none")
    assert result.exit_code == 0, result.output
    d = np.load(tmp_path / "out/sub-01/preprocessed_eeg_test.npy", allow_pickle=True).item()
    assert d["preprocessed_eeg_data"].shape == (2, 6, 6, 100)
    assert run_main("preprocess", tmp_path / "raw", "--out", tmp_path / "o", "--variant", "fancy") == 2


def test_embed_and_import_commands(tmp_path, cache_dir):
    write_image_set(tmp_path / "img", n_train_concepts=2, exemplars=2, n_test=2)
    result = run("embed", "--images", tmp_path / "img", "--device", "cpu")
    assert result.exit_code == 0, result.output
    files = sorted((cache_dir / "features").rglob("*.safetensors"))
    assert len(files) == 4  # image + text, train + test
    path = tmp_path / "clip_feature_maps_training.npy"
    np.save(path, np.ones((4, 1, 8), np.float32))
    result = run("import-features", path, "--images", tmp_path / "img")
    assert result.exit_code == 0 and "clip-vit-l-14" in result.output


def test_models_lists_the_registry():
    out = run("models").output
    for name in ("efficientnet-lite0", "minilm", "clip-vit-h-14", "clip-vit-l-14", "dinov2-vit-b-14",
                 "atm", "nice", "ridge", "eegconformer", "atcnet"):
        assert name in out
    assert "3,072,662" in out  # ATM-S at 63 ch × 250 samples → 1024-d, no subject token (authors: + 250)
    assert "edge, edge-sS" in out and "depth, depth=MODEL" in out  # view families
    assert "modalities (model.modalities" in out and "im@edge+foveated-k45" in out and "tm@text" in out


@pytest.mark.parametrize("command, listed", [
    ("train", ["intra|loso|pooled", "averaged|single|subsets", "small|large", "auto|cpu|cuda"]),
    ("preprocess", ["official|nice-atm", "time|epochs|none"]),
    ("simulate", ["tiny|demo|things", "easy|default|hard", "auto|cpu|cuda"]),
    ("evaluate", ["auto|cpu|cuda"]),
])
def test_help_lists_the_values_of_choice_options(command, listed):
    out = run(command, "--help").output
    for values in listed:
        assert values in out, values


def test_a_value_outside_the_choices_is_refused_with_the_choices(tmp_path, capsys):
    assert run_main("train", "--out", tmp_path / "r", "--protocol", "sideways") == 2
    err = capsys.readouterr().err
    assert "sideways" in err and "intra" in err and "loso" in err and "pooled" in err
    assert not (tmp_path / "r").exists()


@pytest.fixture
def spy(monkeypatch):
    """Library calls replaced by spies recording what the command line passed and whether
    progress bars were on; each also logs a note and a warning."""
    import mindsight.generate.reconstruct as reconstruct_mod
    import mindsight.generate.train_builtin as train_builtin_mod
    import mindsight.preprocess as preprocess_mod
    from mindsight.output import logger, progress_enabled

    calls = []

    def record(name, value=None):
        calls.append((name, progress_enabled(), value))
        logger.info("a note from %s", name)
        logger.warning("a warning from %s", name)

    def fake_train_builtin(out, cfg, device="cpu"):
        record("train-generator")
        return out / "builtin.safetensors"

    def fake_reconstruct(run_dir, rc, **kwargs):
        record("reconstruct", dict(rc.generator_options))
        return {"metrics": {}, "n_images": 0}

    monkeypatch.setattr(preprocess_mod, "preprocess_subject", lambda *a, **k: record("preprocess"))
    monkeypatch.setattr(train_builtin_mod, "train_builtin", fake_train_builtin)
    monkeypatch.setattr(reconstruct_mod, "reconstruct_run", fake_reconstruct)
    monkeypatch.delenv("MINDSIGHT_PROGRESS", raising=False)
    return calls


def test_quiet_hides_notes_and_progress_and_no_progress_hides_bars(spy, tmp_path, caplog, monkeypatch):
    from mindsight.output import progress_enabled

    with caplog.at_level(logging.INFO, logger="mindsight"):
        assert run("preprocess", tmp_path, "--out", tmp_path / "o", "-s", 1).exit_code == 0
        assert "a note from preprocess" in caplog.text and spy[-1][1] is True
        caplog.clear()
        assert run("--quiet", "preprocess", tmp_path, "--out", tmp_path / "o", "-s", 1).exit_code == 0
        assert "a note" not in caplog.text and "a warning from preprocess" in caplog.text
        assert spy[-1][1] is False
        caplog.clear()
        assert run("-q", "train-generator", "--out", tmp_path / "g", "--progress").exit_code == 0
        assert "a note" not in caplog.text and spy[-1][1] is True  # bars asked for explicitly
        # the settings end with the command
        assert progress_enabled() and logging.getLogger("mindsight").getEffectiveLevel() == logging.INFO
        assert run("train-generator", "--out", tmp_path / "g", "--no-progress").exit_code == 0
        assert "a note from train-generator" in caplog.text and spy[-1][1] is False
        assert progress_enabled()
    monkeypatch.setenv("MINDSIGHT_PROGRESS", "0")
    assert run("train-generator", "--out", tmp_path / "g").exit_code == 0 and spy[-1][1] is False
    assert run("train-generator", "--out", tmp_path / "g", "--progress").exit_code == 0 and spy[-1][1] is True
    assert not progress_enabled()


def test_reconstruct_weights_go_to_the_option_the_generator_declares(spy, tmp_path, capsys):
    for generator, expected in (("builtin", {"weights": "/w/gen.safetensors"}),
                                ("sdxl-turbo-ip-adapter", {"model_id": "/w/gen.safetensors"})):
        result = run("reconstruct", tmp_path, "--generator", generator, "--weights", "/w/gen.safetensors")
        assert result.exit_code == 0, result.output
        assert spy[-1] == ("reconstruct", True, expected)
    assert run("reconstruct", tmp_path).exit_code == 0 and spy[-1][2] == {}
    assert run_main("reconstruct", tmp_path, "--generator", "dalle", "--weights", "x") == 2
    assert "unknown generator 'dalle'; available: builtin" in capsys.readouterr().err
