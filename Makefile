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
AGENT_STAMP := $(VENV)/.snakebridge_agent.stamp
AGENT_SOURCES := $(shell find $(ROOT)/native/snakebridge_core $(ROOT)/native/snakebridge_py \
	$(ROOT)/priv/python/snakebridge_agent $(ROOT)/proto -type f \
	-not -path '*/__pycache__/*' -not -name '*.pyc' -not -name '*.so' 2>/dev/null) \
	$(ROOT)/Cargo.toml $(wildcard $(ROOT)/Cargo.lock)

export CARGO_TARGET_DIR := $(BUILD)/cargo
export SNAKEBRIDGE_CARGO_TARGET_DIR := $(BUILD)/cargo
export SNAKEBRIDGE_PYTHON := $(PYTHON)
export LANG := C.UTF-8
export LC_ALL := C.UTF-8
# Tests run with schedulers that sleep at once instead of spinning (+sbwt none), leaving this
# 2-core machine's CPUs to the Python workers; the demo and the benchmarks run the VM as
# users do, with its default busy wait (which answers a call's reply message sooner:
# a sequential call's p50 about 180 µs with it, 250 µs without, in alternating runs here).
test-elixir soak: export ERL_AFLAGS := +sbwt none

.PHONY: help setup toolchain venv agent nif test lint test-rust test-elixir test-path-dep demo bench soak fuzz clean

help:
	@echo "make demo   - run the example (sets everything up first)"
	@echo "make test   - run every test suite and lint gate"
	@echo "make bench  - run the benchmarks with their same-run baselines"
	@echo "make soak   - 200,000 calls from 64 callers with 1% worker kills (make test runs 20,000)"
	@echo "make fuzz   - fuzz the decoders for 300 s (make test gives them 10 s)"
	@echo "make setup  - install what is missing: Elixir, the venv, the Python agent, the NIF"

setup: toolchain agent nif

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

venv: $(PYTHON)

$(PYTHON):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r $(ROOT)/priv/python/requirements-dev.txt

# The worker's Python package with its PyO3 extension, built by maturin into the venv.
agent: $(AGENT_STAMP)

$(AGENT_STAMP): $(PYTHON) $(AGENT_SOURCES) $(ROOT)/priv/python/requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -r $(ROOT)/priv/python/requirements-dev.txt
	cd $(ROOT)/priv/python/snakebridge_agent && VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH \
	  $(VENV)/bin/maturin develop --release --quiet
	touch $@

# The NIF is built by the Mix compiler defined in mix.exs (skipped when nothing changed).
nif: toolchain
	cd $(ROOT) && mix compile
	cd $(ROOT) && MIX_ENV=test mix compile

test: setup lint test-rust test-path-dep test-elixir

lint:
	cd $(ROOT) && cargo fmt --all -- --check
	cd $(ROOT) && cargo clippy --release --workspace --all-targets -- -D warnings
	cd $(ROOT) && MIX_ENV=test mix format --check-formatted
	cd $(ROOT) && MIX_ENV=test mix compile --force --warnings-as-errors

# Core unit/property tests, a real worker against the core's transport, and the worker's
# protocol conformance run (every frame kind and error kind, against real Python).
test-rust:
	cd $(ROOT) && cargo test --release -p snakebridge_core -p snakebridge_bench_baselines
	cd $(ROOT) && cargo run --release -q -p snakebridge_py --example call_worker -- $(PYTHON)

test-elixir:
	cd $(ROOT) && MIX_ENV=test mix test

# The long soak: 200,000 calls from 64 callers, 1% of them killing their worker (make test
# runs 20,000).
soak: setup
	cd $(ROOT) && SNAKEBRIDGE_SOAK_CALLS=200000 MIX_ENV=test mix test test/snakebridge/soak_test.exs

# SnakeBridge must compile as a path dependency of another Mix application.
test-path-dep:
	$(ROOT)/test/path_dependency_test.sh

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
	cd $(ROOT) && cargo build --release -p snakebridge_bench_baselines
	cd $(ROOT) && MIX_ENV=prod mix run --no-start bench/call_bench.exs
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

clean:
	rm -rf $(BUILD) $(ROOT)/priv/native $(ROOT)/deps
