# mindsight: `make demo` and `make test` are the two set-up commands (see README).
#
# Install order matters on CPU-only machines (see README, "Installing"):
#   1. torch first, pinned by constraints.txt for every later step, so no package can pull a
#      newer CUDA build over it;
#   2. the package and its dependencies under the same constraints;
#   3. `mindsight doctor --fix` repairs what a CPU-only torch cannot load (torchaudio's CUDA
#      libraries); torchvision's missing CPU ops are registered at import by mindsight itself.
# A stamp file makes a second `make install` a no-op unless pyproject.toml or constraints.txt change.
# --no-compile: pip would byte-compile every module of every package (most never imported);
# Python compiles the ones it imports, once, on first use.

PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.mindsight-installed
TORCH  := $(shell sed -n 's/^torch==//p' constraints.txt)

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install test demo lint bench clean help

help:
	@echo "make install   create $(VENV) and install mindsight with its dependencies"
	@echo "make test      install, then run the test suite (what CI runs)"
	@echo "make demo      install, then simulate data, train ATM + multi-level blur + ridge, evaluate, reconstruct, write runs/demo/report.md"
	@echo "make lint      ruff over src/ tests/ benchmarks/"
	@echo "make bench     install, then run the benchmarks (results go to benchmarks/results/)"
	@echo "make clean     remove $(VENV) and caches"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel
	$(PIP) install --quiet --no-compile "torch==$(TORCH)"
	$(PIP) install --quiet --no-compile -c constraints.txt -e ".[dev]"
	$(PY) -m mindsight doctor --fix
	touch $(STAMP)

test: install
	$(PY) -m pytest

demo: install
	$(VENV)/bin/mindsight demo --out runs/demo --data data/sim-demo

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(PY) benchmarks/bench_cache.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_brainmodule.py
	$(PY) benchmarks/bench_latency.py
	$(PY) benchmarks/bench_retrieval.py
	$(PY) benchmarks/bench_simulator.py --decoders
	$(PY) benchmarks/bench_generate.py
	$(PY) benchmarks/bench_reconstruction_metrics.py
	$(PY) benchmarks/bench_analysis.py
	$(PY) benchmarks/bench_stream.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
