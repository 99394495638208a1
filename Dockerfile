# syntax=docker/dockerfile:1
# One image for every claude-warroom daemon; the command picks the daemon, e.g.
#   args: ["warroom-runner"]  (see deploy/). Build (needs a Docker or Podman engine):
#   docker build --build-arg OC_SHA256=<sha256 of the oc tarball> -t <registry>/claude-warroom:<tag> .
# Runs as UID 1001 on a read-only root filesystem: it writes only to the mounted /workspace
# and /tmp (HOME=/tmp). Linted by scripts/lint-deploy (hadolint, checkov); it cannot be built
# on the development machines, which have no container engine.

# Base images, pinned by version (the Rust one is the workspace's rust-version). Add
# @sha256 digests when you mirror them into your registry.

# ---------------------------------------------------------------------------------------
# 1. Every binary of the workspace, release profile, from the committed Cargo.lock.
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
# Binaries the image must carry; the build fails when one is missing. warroom-guard is the
# runner's PreToolUse hook (crates/guard): an image without it would run a weaker policy.
ARG REQUIRED_BINS="warroom-gateway warroom-dispatcher warroom-runner warroom-publisher warroom-guard claude-warroom"
RUN cargo build --release --locked --bins \
    && mkdir -p /out/bin \
    && for bin in ${REQUIRED_BINS}; do \
         test -x "target/release/${bin}" || { echo "missing binary: ${bin}" >&2; exit 1; }; \
         install -m 0755 "target/release/${bin}" /out/bin/; \
       done \
    && rm -rf target "${CARGO_HOME:-/usr/local/cargo}/registry" "${CARGO_HOME:-/usr/local/cargo}/git"

# ---------------------------------------------------------------------------------------
# 2. The Claude Code CLI, pinned (same pin as scripts/setup). The npm package carries a
#    native binary, so the runtime image needs no Node.js.
FROM node:22.12.0-bookworm-slim AS claude
ARG CLAUDE_CODE_VERSION=2.1.330
WORKDIR /opt/claude
RUN npm install --no-audit --no-fund --prefix /opt/claude "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" \
    && cp -L /opt/claude/node_modules/.bin/claude /opt/claude/claude \
    && /opt/claude/claude --version \
    && npm cache clean --force

# ---------------------------------------------------------------------------------------
# 3. oc and kubectl, pinned by version and checked by sha256.
FROM debian:bookworm-slim AS clients
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# kubectl 1.32.3 linux/amd64 (dl.k8s.io); the same binary scripts/setup checks.
ARG KUBECTL_VERSION=1.32.3
ARG KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
# oc from the OpenShift mirror. Its checksum has no default: take it from the release's
# sha256sum.txt (checked against Red Hat's signature) and pass --build-arg OC_SHA256=...
ARG OC_VERSION=4.18.20
ARG OC_SHA256=""
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl=7.88.1-10+deb12u15 ca-certificates=20250419~deb12u2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /out
RUN test -n "${OC_SHA256}" || { echo "pass --build-arg OC_SHA256=<sha256 of openshift-client-linux-${OC_VERSION}.tar.gz>" >&2; exit 1; } \
    && curl -fsSLo kubectl "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/amd64/kubectl" \
    && echo "${KUBECTL_SHA256}  kubectl" | sha256sum --check --strict \
    && curl -fsSLo oc.tar.gz "https://mirror.openshift.com/pub/openshift-v4/x86_64/clients/ocp/${OC_VERSION}/openshift-client-linux-${OC_VERSION}.tar.gz" \
    && echo "${OC_SHA256}  oc.tar.gz" | sha256sum --check --strict \
    && tar -xzf oc.tar.gz oc \
    && chmod 0755 kubectl oc \
    && rm oc.tar.gz

# ---------------------------------------------------------------------------------------
# 4. Runtime: the daemons, claude, oc, kubectl, jq, git (gateway and publisher), tini as
#    PID 1 (reaps orphans of a killed runner; the runner itself is the subreaper of its runs).
FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="claude-warroom" \
      org.opencontainers.image.description="claude-warroom daemons and the Claude Code CLI for read-only investigations in OpenShift/HyperShift clusters" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/intility/devinfra-claude-warroom" \
      org.opencontainers.image.vendor="Intility" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
         ca-certificates=20250419~deb12u2 \
         git=1:2.39.5-0+deb12u3 \
         openssh-client=1:9.2p1-2+deb12u10 \
         jq=1.6-2.1+deb12u3 \
         tini=0.19.0-1+b3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 1001 warroom \
    && useradd --uid 1001 --gid 1001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin warroom \
    && mkdir -p /workspace \
    && chown 1001:0 /workspace \
    && chmod 0770 /workspace
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=claude /opt/claude/claude /usr/local/bin/claude
COPY --from=clients /out/oc /out/kubectl /usr/local/bin/
COPY context/ /opt/claude-context/
# HOME and every scratch path point at writable mounts: the root filesystem stays read-only.
ENV HOME=/tmp \
    TMPDIR=/tmp \
    WARROOM_CLAUDE_BIN=/usr/local/bin/claude \
    WARROOM_WORK_ROOT=/workspace \
    WARROOM_HEALTH_ADDR=0.0.0.0:8080 \
    WARROOM_LOG_FORMAT=json \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    DISABLE_AUTOUPDATER=1
WORKDIR /workspace
USER 1001:1001
EXPOSE 8080
# Kubernetes probes /healthz and /readyz on WARROOM_HEALTH_ADDR (see deploy/); the image has
# no HTTP client for a Docker HEALTHCHECK.
# checkov:skip=CKV_DOCKER_2: Kubernetes liveness/readiness probes on /healthz and /readyz replace HEALTHCHECK
HEALTHCHECK NONE
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["claude-warroom", "--help"]
