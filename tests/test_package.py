"""The top-level package: the dataset-agnostic readers, the run API and every registry are
exported; importing it stays light (no torch until a torch-based name is used)."""

from __future__ import annotations

import subprocess
import sys

import mindsight as ms


def test_top_level_exports_readers_run_api_and_registries():
    from mindsight.registry import Registry

    for name in ("DATASETS", "ENCODERS", "EMBEDDERS", "VIEWS", "IMAGE_SIDES", "GENERATORS", "ANALYSES"):
        registry = getattr(ms, name)
        assert isinstance(registry, Registry) and len(registry.names()) > 0, name
    assert {"THINGS-EEG2", "THINGS-MEG", "EEG-ImageNet"} <= set(ms.DATASETS.names())
    assert {"repetitions", "temporal", "spatial"} <= set(ms.ANALYSES.names())
    assert hasattr(ms.Run, "open") and callable(ms.read_recording) and callable(ms.dataset_for)
    assert set(ms.__all__) <= set(dir(ms))


def test_import_mindsight_does_not_import_torch():
    code = "import sys, mindsight; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
