# SnakeBridge: two commands do everything on a fresh machine.
#   make demo   runs the examples: stdlib, numpy tensors, DSPy (installs what is missing first)
#   make test   runs every test suite and the lint gates
# `make setup` is what both use; `make bench` runs the benchmarks, `make soak` the long soak.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BUILD := $(ROOT)/_build
VENV := $(BUILD)/venv
PYTHON := $(VENV)/bin/python
REQUIREMENTS_STAMP := $(VENV)/.requirements.stamp
PY_SOURCES := priv/python test/python test/support/python bench/python

export CARGO_TARGET_DIR := $(BUILD)/cargo
export SNAKEBRIDGE_CARGO_TARGET_DIR := $(BUILD)/cargo
export SNAKEBRIDGE_PYTHON := $(PYTHON)
export LANG := C.UTF-8
export LC_ALL := C.UTF-8
# Tests run with schedulers that sleep at once instead of spinning (+sbwt none), leaving a
# small machine's CPUs to the Python workers; the demo and the benchmarks run the VM as
# users do, with its default busy wait (which answers a call's reply message sooner).
test-elixir soak: export ERL_AFLAGS := +sbwt none

.PHONY: help setup toolchain venv nif test lint test-rust test-python test-elixir test-package demo bench soak fuzz clean release-artifacts

help:
	@echo "make demo   - run the example (sets everything up first)"
	@echo "make test   - run every test suite and lint gate"
	@echo "make bench  - run the benchmarks with their same-run baselines"
	@echo "make soak   - 200,000 calls from 64 callers with 1% worker kills (make test runs 20,000)"
	@echo "make fuzz   - fuzz the decoders for 300 s (make test gives them 10 s)"
	@echo "make setup  - install what is missing: Elixir, the test venv, the native code"
	@echo "make release-artifacts - the precompiled NIF and worker extension, and their checksum file"

setup: toolchain venv nif

# Debian's Elixir/Erlang when `mix` is absent (as root), and a check for cargo.
toolchain:
	@if ! command -v mix >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Elixir and Erlang from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq elixir erlang-dev >/dev/null; \
	  else \
	    echo "mix not found: install Debian's 'elixir erlang-dev' (as root) and re-run" >&2; exit 1; \
	  fi; \
	fi
	@command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup)" >&2; exit 1; }
	@command -v python3 >/dev/null 2>&1 || { echo "python3 not found" >&2; exit 1; }

# The venv of the tests, the demo and the benchmarks: the libraries they call (numpy, dspy),
# pytest and ruff for the agent's Python, and uv (for the package test's
# `mix snakebridge.setup`).
# The worker's own code is not installed in it: SnakeBridge hands it to every interpreter.
venv: $(REQUIREMENTS_STAMP)

$(PYTHON):
	python3 -m venv $(VENV)

$(REQUIREMENTS_STAMP): $(PYTHON) $(ROOT)/test/python-requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -r $(ROOT)/test/python-requirements.txt
	touch $@

# The NIF and the worker's Python extension are built by the Mix compiler of
# native/mix_compiler.exs (skipped when nothing changed).
nif: toolchain
	cd $(ROOT) && mix compile
	cd $(ROOT) && MIX_ENV=test mix compile

test: setup lint test-rust test-python test-package test-elixir

lint:
	cd $(ROOT) && cargo fmt --all -- --check
	cd $(ROOT)/bench/baselines && cargo fmt --all -- --check
	cd $(ROOT) && cargo clippy --release --workspace --all-targets -- -D warnings
	cd $(ROOT) && PYO3_NO_PYTHON=1 cargo clippy --release -p snakebridge_py --features extension-module -- -D warnings
	cd $(ROOT)/bench/baselines && cargo clippy --release --all-targets -- -D warnings
	cd $(ROOT) && $(VENV)/bin/ruff check $(PY_SOURCES)
	cd $(ROOT) && $(VENV)/bin/ruff format --check $(PY_SOURCES)
	cd $(ROOT) && MIX_ENV=test mix format --check-formatted
	cd $(ROOT) && MIX_ENV=test mix compile --force --warnings-as-errors

# Core unit/property tests, a real worker against the core's transport, and the worker's
# protocol conformance run (every frame kind and error kind, against real Python).
test-rust:
	cd $(ROOT) && cargo test --release -p snakebridge_core
	cd $(ROOT)/bench/baselines && cargo test --release
	cd $(ROOT) && cargo run --release -q -p snakebridge_py --example call_worker -- $(PYTHON)

# The worker agent's own tests (pytest, in-process, against the built extension).
test-python:
	cd $(ROOT) && $(PYTHON) -m pytest test/python -q

# Twice: on the local carrier (the default) and on gRPC, which every pool of the suite
# uses when SNAKEBRIDGE_CARRIER=grpc.
test-elixir:
	cd $(ROOT) && MIX_ENV=test mix test
	cd $(ROOT) && SNAKEBRIDGE_CARRIER=grpc MIX_ENV=test mix test

# The long soak: 200,000 calls from 64 callers, 1% of them killing their worker (make test
# runs 20,000).
soak: setup
	cd $(ROOT) && SNAKEBRIDGE_SOAK_CALLS=200000 MIX_ENV=test mix test test/snakebridge/soak_test.exs

# SnakeBridge as a dependency of a new app, from exactly its package's files: bare
# interpreters, mix snakebridge.setup, precompiled artifacts without Rust, a missing Python.
test-package:
	$(ROOT)/test/package_test.sh

demo: setup
	cd $(ROOT) && mix run examples/stdlib.exs
	@echo
	cd $(ROOT) && mix run examples/numpy.exs
	@echo
	cd $(ROOT) && mix run examples/dspy/demo.exs

bench: setup
	$(VENV)/bin/pip install -q --disable-pip-version-check -r $(ROOT)/bench/requirements.txt
	@if ! dpkg -s erlang-jiffy >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing jiffy (codec benchmark baseline) from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq erlang-jiffy >/dev/null \
	      || echo "could not install erlang-jiffy: bench/codec_bench.exs skips its jiffy rows" >&2; \
	  else \
	    echo "erlang-jiffy not installed (install Debian's 'erlang-jiffy' as root): bench/codec_bench.exs skips its jiffy rows" >&2; \
	  fi; \
	fi
	cd $(ROOT)/bench/baselines && cargo build --release
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/call_bench.exs
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/wakeups_bench.exs
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/runtime_bench.exs
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/introspection_bench.exs
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/generator_bench.exs
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/tensor_bench.exs
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/codec_bench.exs

# The decoders' fuzz run (native/snakebridge_core/tests/fuzz_decoders.rs), longer than the
# 10 s `make test` gives it: SNAKEBRIDGE_FUZZ_SECONDS=600 make fuzz; SNAKEBRIDGE_FUZZ_SEED
# repeats a run.
fuzz:
	cd $(ROOT) && SNAKEBRIDGE_FUZZ_SECONDS=$${SNAKEBRIDGE_FUZZ_SECONDS:-300} \
	  cargo test --release -p snakebridge_core --test fuzz_decoders -- --nocapture

# This machine's precompiled artifacts (the NIF and the worker extension, built from source)
# and checksum-snakebridge.exs for them, in _build/release: upload the artifacts to the
# release and put the checksum file in the package's root before publishing.
release-artifacts: toolchain
	cd $(ROOT) && mix snakebridge.release_artifacts $(BUILD)/release

clean:
	rm -rf $(BUILD) $(ROOT)/priv/native $(ROOT)/deps
