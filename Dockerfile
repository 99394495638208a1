# syntax=docker/dockerfile:1
# One image for every claude-warroom daemon; the command picks the daemon, e.g.
#   args: ["warroom-runner"]  (see deploy/). Build with any OCI builder, no Docker engine
#   needed (docs/deploying.md, "Building the image"):
#   buildah bud --build-arg OC_SHA256=<sha256 of the oc tarball> -t <registry>/claude-warroom:<tag> .
#   docker build --build-arg OC_SHA256=... -t ... .   (or kaniko, podman build)
# Runs as UID 1001, or any UID OpenShift assigns (nss_wrapper gives it a passwd entry for
# ssh-keygen), on a read-only root filesystem: it writes only to the mounted /workspace and
# /tmp (HOME=/tmp). Linted by scripts/lint-deploy (hadolint, checkov); it cannot be built on
# the development machines, which have no container engine.
#
# Reproducible inputs:
#   - base images: by tag here. SET: pin each FROM by digest (`FROM rust:1.90-bookworm@sha256:...`)
#     once you mirror them into your registry; the digests could not be verified where this
#     file was written, so none is invented. scripts/lint-deploy lists every unpinned image
#     (WARROOM_REQUIRE_DIGESTS=1 makes that an error, for release builds).
#   - Debian packages: from snapshot.debian.org at DEBIAN_SNAPSHOT, a fixed point in the
#     archive, so the pinned versions below stay installable after the archive moves on
#     (plain http as apt always uses it: the archive's GPG signatures check every package;
#     the slim base has no CA bundle yet).
#     Bump the timestamp and the versions together (docs/deploying.md, "Building the image").
#   - Rust crates: the committed Cargo.lock (--locked).
#   - the Claude Code CLI: `npm ci` from deploy/image/claude-code/package-lock.json
#     (sha512 integrity of every package).
#   - oc and kubectl: checked by sha256.
# An SBOM is written at build time into /usr/share/claude-warroom/sbom/: CycloneDX for the
# Rust workspace (cargo-cyclonedx) and for the CLI (npm sbom), and the Debian packages.
ARG DEBIAN_SNAPSHOT=20261205T040000Z

# ---------------------------------------------------------------------------------------
# 1. Every binary of the workspace, release profile, from the committed Cargo.lock.
FROM rust:1.90-bookworm AS build
# cargo-cyclonedx writes the Rust SBOM; pinned, from crates.io, with its own lockfile.
ARG CARGO_CYCLONEDX_VERSION=0.5.9
RUN cargo install --locked "cargo-cyclonedx@${CARGO_CYCLONEDX_VERSION}"
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
    && cargo cyclonedx --format json \
    && mkdir -p /out/sbom \
    && find . -name '*.cdx.json' -not -path './target/*' -exec cp {} /out/sbom/ \; \
    && test -n "$(ls /out/sbom)" \
    && rm -rf target "${CARGO_HOME:-/usr/local/cargo}/registry" "${CARGO_HOME:-/usr/local/cargo}/git"

# ---------------------------------------------------------------------------------------
# 2. The Claude Code CLI, from the committed lockfile: `npm ci` checks every package against
#    its sha512 integrity and runs no install script; the CLI is the native binary of the
#    platform package, so the runtime image needs no Node.js.
FROM node:22.12.0-bookworm-slim AS claude
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TARGETARCH=amd64
WORKDIR /opt/claude
COPY deploy/image/claude-code/package.json deploy/image/claude-code/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund \
    && case "${TARGETARCH}" in amd64) arch=x64 ;; arm64) arch=arm64 ;; *) echo "unsupported ${TARGETARCH}" >&2; exit 1 ;; esac \
    && install -m 0755 "node_modules/@anthropic-ai/claude-code-linux-${arch}/claude" /opt/claude/claude \
    && /opt/claude/claude --version \
    && mkdir -p /out/sbom \
    && npm sbom --sbom-format cyclonedx --omit dev >/out/sbom/claude-code.cdx.json \
    && npm cache clean --force

# ---------------------------------------------------------------------------------------
# 3. oc and kubectl, pinned by version and checked by sha256.
FROM debian:bookworm-slim AS clients
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_SNAPSHOT
# The archive as it was at DEBIAN_SNAPSHOT (see the top of this file).
RUN rm -f /etc/apt/sources.list.d/debian.sources \
    && printf '%s\n' \
         "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/${DEBIAN_SNAPSHOT} bookworm main" \
         "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/${DEBIAN_SNAPSHOT} bookworm-updates main" \
         "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian-security/${DEBIAN_SNAPSHOT} bookworm-security main" \
         >/etc/apt/sources.list
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
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_SNAPSHOT
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
# libnss-wrapper: OpenShift runs the image under an arbitrary UID with no passwd entry, which
# ssh-keygen (the publisher's commit signing) refuses; the daemons give that UID an entry
# through nss_wrapper. coreutils (timeout) is essential in Debian; checked below.
RUN rm -f /etc/apt/sources.list.d/debian.sources \
    && printf '%s\n' \
         "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/${DEBIAN_SNAPSHOT} bookworm main" \
         "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/${DEBIAN_SNAPSHOT} bookworm-updates main" \
         "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian-security/${DEBIAN_SNAPSHOT} bookworm-security main" \
         >/etc/apt/sources.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
         ca-certificates=20250419~deb12u2 \
         git=1:2.39.5-0+deb12u3 \
         openssh-client=1:9.2p1-2+deb12u10 \
         jq=1.6-2.1+deb12u3 \
         tini=0.19.0-1+b3 \
         libnss-wrapper=1.1.12-1 \
    && timeout --version >/dev/null \
    && test -e /usr/lib/x86_64-linux-gnu/libnss_wrapper.so -o -e /usr/lib/aarch64-linux-gnu/libnss_wrapper.so \
    && mkdir -p /usr/share/claude-warroom/sbom \
    && dpkg-query -W -f '${Package}=${Version} ${Architecture}\n' | sort >/usr/share/claude-warroom/sbom/debian-packages.txt \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* /var/log/apt /var/log/dpkg.log \
    && groupadd --gid 1001 warroom \
    && useradd --uid 1001 --gid 1001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin warroom \
    && mkdir -p /workspace \
    && chown 1001:0 /workspace \
    && chmod 0770 /workspace
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=claude /opt/claude/claude /usr/local/bin/claude
COPY --from=build /out/sbom/ /usr/share/claude-warroom/sbom/
COPY --from=claude /out/sbom/ /usr/share/claude-warroom/sbom/
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
