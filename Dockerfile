# pvc-bridge container image.
#
#   docker build -t registry.example.com/pvc-bridge:0.1.0 .
#
# Two stages: the release binary is built on Debian 12 with the Rust
# toolchain, then copied into a slim Debian 12 with only what the bridge runs:
# git (the audit trail commits with `git fast-import`) and the CA
# certificates (HTTPS to Foreman and the puppetservers' status API when no
# CA is configured). No OpenSSL: the bridge uses rustls.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# The workspace (its manifests name every member); .dockerignore leaves out
# target/, benchmarks, fuzzing and the Foreman plugin.
COPY . .
# Release profile without debug info: a smaller image.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked -p pvc-bridge \
    && install -D -m 0755 target/release/pvc-bridge /out/pvc-bridge

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pvc-bridge \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/pvc-bridge \
        --no-create-home --shell /usr/sbin/nologin pvc-bridge \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/pvc-bridge /etc/pvc-bridge
COPY --from=build /out/pvc-bridge /usr/local/bin/pvc-bridge
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# git wants a home; /tmp is writable with a read-only root filesystem
# (the chart mounts an emptyDir there).
ENV HOME=/tmp
WORKDIR /var/lib/pvc-bridge
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/pvc-bridge"]
CMD ["serve", "--config", "/etc/pvc-bridge/bridge.toml"]
