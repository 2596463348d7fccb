# syntax=docker/dockerfile:1.7
# Multi-stage build: a Rust toolchain with protoc and the protobuf well-known types (the
# Temporal SDK needs both at build time), then a small Debian runtime that runs the binary as
# an unprivileged user. Checked with hadolint in scripts/test.
#
# Two images:
#   docker build --target server . the server (also the default, last stage): built with
#                                  --no-default-features, so it holds neither the reference
#                                  worker, nor `demo` (whose login's password is public), nor `dev`
#   docker build --target worker . the reference worker (`worker` feature only)

FROM rust:1.95-bookworm AS toolchain
# Debian's own versions of the distribution's packages: pinning them would break every point
# release without making the image more reproducible than the base image tag does.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY assets ./assets
# Declared targets must exist for cargo to read the manifest, even when not built.
COPY tests ./tests
COPY bench ./bench

# One build stage per image, so `--target server` never compiles the worker and the other way
# round; the caches are shared, one build at a time.
FROM toolchain AS build-server
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin temporal-bff --no-default-features \
 && cp target/release/temporal-bff /usr/local/bin/temporal-bff

FROM toolchain AS build-worker
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin temporal-bff --no-default-features --features worker \
 && cp target/release/temporal-bff /usr/local/bin/temporal-bff

FROM debian:bookworm-slim AS base
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bff
USER 10001:10001
ENV LOG_FORMAT=json
ENTRYPOINT ["temporal-bff"]

FROM base AS worker
COPY --from=build-worker /usr/local/bin/temporal-bff /usr/local/bin/temporal-bff
CMD ["worker"]

FROM base AS server
COPY --from=build-server /usr/local/bin/temporal-bff /usr/local/bin/temporal-bff
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/health"]
CMD ["serve"]
