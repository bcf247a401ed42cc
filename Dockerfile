# syntax=docker/dockerfile:1
#
# Container images of the gateway and the api, from one multi-stage build:
#
#   docker build --target gateway -t stomp-gateway:dev .
#   docker build --target api     -t stomp-api:dev .
#
# (without --target, the last stage, gateway, is built). Two images rather
# than one holding both binaries: each runs one process with its own port,
# listen default and health check, and neither carries the other's binary.
# They share the builder stage, so building both compiles the workspace once.
#
# Runtime: distroless cc (Debian 12: glibc and the C runtime libraries, CA
# certificates, tzdata, the user nonroot with uid 65532). No shell, no
# package manager, no curl:
# the processes need none of them. The HEALTHCHECK therefore runs
# deploy/docker/healthcheck.c, a small static probe, in exec form; it asks
# /healthz (liveness) on the address in GATEWAY_LISTEN / API_LISTEN, so set
# the listen address through that variable, not with --listen. Load
# balancers and orchestrators should still probe over HTTP themselves:
# /readyz for traffic (503 while a gateway drains), /healthz for restarts
# (docs/operations.md, "Container image").
#
# Settings are environment variables (docs/configuration.md). Secrets (the
# resume key, JWT keys, DATABASE_URL) come from the orchestrator at run
# time, through *_FILE variables pointing at mounted files where the
# service offers them; none is baked into an image.
#
# Checked offline by scripts/check-infra (checkov's Dockerfile checks); built
# and smoke-tested with a container engine by scripts/check-image.

# ---------------------------------------------------------------------------
# Builder: the release binaries and the health probe.
# ---------------------------------------------------------------------------
# The toolchain the workspace is tested with (its rust-version is 1.85), on
# Debian 12 like the runtime image, so the binaries link against the same
# glibc.
FROM rust:1.95.0-slim-bookworm AS builder

WORKDIR /src
COPY . .

# --locked: exactly Cargo.lock's versions. The cache mounts keep the crate
# downloads and target/ between builds on the same machine; they are not
# part of any image, so the binaries are copied out to /out.
RUN --mount=type=cache,id=stomp-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=stomp-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p gateway -p api \
    && mkdir -p /out \
    && cp target/release/gateway target/release/api /out/

# Static, so that it needs nothing from the runtime image.
RUN cc -std=c11 -O2 -Wall -Wextra -Werror -static -s \
    -o /out/healthcheck deploy/docker/healthcheck.c

# ---------------------------------------------------------------------------
# api: REST service and persistence of durable messages (docs/api.md).
#   docker run stomp-api:dev             serve (applies the migrations first)
#   docker run stomp-api:dev migrate     apply the migrations and exit
# Needs DATABASE_URL and REDIS_URL.
# ---------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS api

LABEL org.opencontainers.image.title="stomp-api" \
      org.opencontainers.image.description="REST service: durable history on PostgreSQL, server-side publishing" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/api /usr/local/bin/api
COPY --from=builder /out/healthcheck /usr/local/bin/healthcheck

# Inside a container the service must listen on every interface (its own
# default is loopback only).
ENV API_LISTEN=0.0.0.0:8081
EXPOSE 8081

USER 65532:65532

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "--env", "API_LISTEN", "/healthz"]

ENTRYPOINT ["/usr/local/bin/api"]

# ---------------------------------------------------------------------------
# gateway: the STOMP-over-WebSocket gateway (docs/configuration.md).
#   docker run -p 8080:8080 stomp-gateway:dev            embedded broker
#   docker run -e GATEWAY_REDIS_URL=redis://… stomp-gateway:dev   cluster
# SIGTERM drains (docs/operations.md, "Shutdown and drain"): give the
# container a stop timeout above drain delay + drain window (75 s with the
# defaults), e.g. docker stop -t 75, or compose's stop_grace_period.
# ---------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS gateway

LABEL org.opencontainers.image.title="stomp-gateway" \
      org.opencontainers.image.description="STOMP 1.2 over WebSocket fan-out gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/gateway /usr/local/bin/gateway
COPY --from=builder /out/healthcheck /usr/local/bin/healthcheck

ENV GATEWAY_LISTEN=0.0.0.0:8080
EXPOSE 8080

USER 65532:65532

HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/healthcheck", "--env", "GATEWAY_LISTEN", "/healthz"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gateway"]
