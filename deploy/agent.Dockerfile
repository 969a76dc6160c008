# syntax=docker/dockerfile:1
#
# The discovery agent as a static musl binary on an empty base: no shell, no package manager,
# a non-root user, CA roots for https seeds.
#
#   docker build -f deploy/agent.Dockerfile -t <registry>/alternator-discovery-agent:<tag> .

ARG RUST_IMAGE=rust:1.95.0-alpine

FROM ${RUST_IMAGE} AS build
# ring (TLS) compiles C code against musl's headers.
RUN apk add --no-cache musl-dev ca-certificates
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY routing routing
COPY engine engine
COPY filter filter
COPY dynamic-module dynamic-module
COPY discovery-agent discovery-agent
COPY tests/alternator-sim tests/alternator-sim
# On Alpine the host target is *-linux-musl, whose binaries are statically linked.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p alternator-discovery-agent \
    && cp target/release/alternator-discovery-agent /alternator-discovery-agent

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /alternator-discovery-agent /alternator-discovery-agent
USER 65532:65532
EXPOSE 9181
ENTRYPOINT ["/alternator-discovery-agent"]
