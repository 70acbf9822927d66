# `make demo` and `make test` each set up a fresh machine from nothing, then run.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONHASHSEED := 0

.PHONY: setup sysdeps native demo test lint bench fuzz clean gpu-bundle

setup: $(STAMP) sysdeps native

# The rule engine's hot modules compiled with mypyc (surgery/native.py; skipped when current).
native: $(STAMP)
	$(BIN)/python -c 'import surgery.native; surgery.native.main()'

# Debian packages: graphviz (`dot`, the visualizer's layout engine) and chromium (the browser the
# HTML-report tests drive through Playwright). Installed only when missing.
sysdeps:
	@if ! command -v dot >/dev/null || ! command -v chromium >/dev/null; then \
		echo "installing Debian packages: graphviz chromium fonts-dejavu-core"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz chromium fonts-dejavu-core >/dev/null; \
	fi

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3
	# compat: a one-line path entry; the default import hook costs every command 12 ms at start
	$(BIN)/pip install --quiet -e '.[tf,onnx,trt,dev]' --config-settings editable_mode=compat
	# tensorboard (GraphDef protos without TensorFlow) and tf-keras (TF1-style Keras graphs)
	# are installed without deps: their dependency lists would pull the full `tensorflow` wheel.
	# mrcnn-colab (Matterport's Mask R-CNN, for fixtures) too: the graph needs none of its deps.
	$(BIN)/pip install --quiet --no-deps tensorboard==2.21.0 tf-keras==2.21.0 mrcnn-colab==2.1
	touch $(STAMP)

demo: setup
	$(BIN)/python -m surgery.demo --out demo_out

test: setup
	$(BIN)/ruff check surgery plugins viz tests benchmarks fuzz
	$(BIN)/mypy surgery
	$(BIN)/pytest -q -ra

lint: setup
	$(BIN)/ruff check surgery plugins viz tests benchmarks fuzz
	$(BIN)/mypy surgery

# Real-model plugin dumps and a run script for checking the GPU kernels on a GPU machine.
gpu-bundle: setup
	$(BIN)/python -m benchmarks.gpu_bundle

# Benchmark-only dependencies (the `bench` extra), installed on first use.
bench: setup
	@$(BIN)/python -c 'import onnx_graphsurgeon' 2>/dev/null || $(BIN)/pip install --quiet -e '.[tf,onnx,trt,dev,bench]' --config-settings editable_mode=compat
	$(BIN)/python -m benchmarks.run $(BENCH)

# Fuzzing and properties (fuzz/): FUZZ_CASES cases split across the properties, on every core;
# prints the count per property and every failure (exit 1 on one not already known).
FUZZ_CASES ?= 100000
fuzz: setup
	$(BIN)/ruff check fuzz
	$(BIN)/python -m fuzz --cases $(FUZZ_CASES)

clean:
	rm -rf $(VENV) demo_out gpu_bundle .pytest_cache build surgery/*.so surgery/*/*.so surgery/native_build.txt
