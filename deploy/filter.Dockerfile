# syntax=docker/dockerfile:1
#
# The alternator-mesh proxy-wasm filter as an OCI image that holds nothing but the module.
# Istio's WasmPlugin (and the EnvoyFilter recipe in envoy/istio/) pulls it with
# `url: oci://<registry>/alternator-filter:<tag>`: istio-agent takes the image's last layer and
# extracts the file named plugin.wasm from it.
#
# Push it as ONE linux/amd64 image with no attestations: istio-agent looks for the linux/amd64
# image only, whatever the node's architecture, so an image built on arm64 without --platform,
# or an index carrying attestation manifests (buildx adds provenance by default), is not found
# (envoy/istio/README.md, "Building the filter image"):
#
#   docker buildx build --platform linux/amd64 --provenance=false --sbom=false \
#     -f deploy/filter.Dockerfile -t <registry>/alternator-filter:<tag> --push .
#
# The Rust stage runs on the build machine's own platform ($BUILDPLATFORM): the module is the
# same Wasm file everywhere, so an arm64 machine compiles natively instead of under emulation.

ARG RUST_IMAGE=rust:1.95.0-slim

FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
# Every workspace member's sources are needed for cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY routing routing
COPY engine engine
COPY filter filter
COPY dynamic-module dynamic-module
COPY discovery-agent discovery-agent
COPY tests/alternator-sim tests/alternator-sim
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked -p alternator-filter --target wasm32-wasip1 --profile wasm-release \
    && cp target/wasm32-wasip1/wasm-release/alternator_filter.wasm /alternator_filter.wasm

FROM scratch
COPY --from=build /alternator_filter.wasm /plugin.wasm
