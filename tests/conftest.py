"""Test setup: offline, CPU-only, and a private cache directory per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("MINDSIGHT_TEST_GPU") != "1":  # CPU-only unless the GPU tests are asked for
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["COLUMNS"] = "200"  # wide tables in CLI output
sys.path.insert(0, str(Path(__file__).parent))  # the `layouts` helper module

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("MINDSIGHT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def cache_dir(_private_cache) -> Path:
    return _private_cache


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny tensors: threading only adds overhead there (and
    stalls on a busy 2-core machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
