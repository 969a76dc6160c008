# syntax=docker/dockerfile:1
#
# Envoy 1.40 (the official image) with the alternator-mesh filter and the compose bootstrap.
# The build stage is the one of deploy/filter.Dockerfile; the bootstrap's ${NAME:-default}
# placeholders are rendered to their defaults and the result is checked with
# `envoy --mode validate` while the image builds, so a broken config never becomes an image.

ARG RUST_IMAGE=rust:1.95.0-slim
ARG ENVOY_IMAGE=envoyproxy/envoy:v1.40.0

FROM ${RUST_IMAGE} AS build
RUN rustup target add wasm32-wasip1
WORKDIR /src
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

FROM ${ENVOY_IMAGE}
COPY --from=build /alternator_filter.wasm /etc/envoy/alternator_filter.wasm
COPY deploy/envoy-compose.yaml /etc/envoy/envoy.template.yaml
# The single quotes are deliberate: the shell must not expand the placeholders sed replaces.
# hadolint ignore=SC2016
RUN sed -E 's/\$\{[A-Z0-9_]+:-([^}]*)\}/\1/g' /etc/envoy/envoy.template.yaml > /etc/envoy/envoy.yaml \
    && if grep -q '\${' /etc/envoy/envoy.yaml; then echo "unrendered placeholder in envoy.yaml" >&2; exit 1; fi \
    && envoy --mode validate -c /etc/envoy/envoy.yaml
EXPOSE 8000 9902
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml", "--log-level", "info"]
