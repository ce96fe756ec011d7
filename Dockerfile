# syntax=docker/dockerfile:1.7
#
# pgplane container image.
#
#   docker build -t pgplane:dev .
#
# Stage 1 builds one fully static binary (glibc, crt-static, static-pie) on
# the same Debian release as the development machines, so the build here is
# the build that was proven locally:
#   RUSTFLAGS='-C target-feature=+crt-static' \
#     cargo build --release --target x86_64-unknown-linux-gnu
# glibc >= 2.34 carries the `files` and `dns` NSS modules inside libc, so a
# static binary still resolves Service names (getaddrinfo through
# /etc/resolv.conf) and reads /etc/passwd without any shared library.
#
# Stage 2 is distroless "static": CA certificates, tzdata, /etc/passwd with the
# `nonroot` user (65532) and nothing else: no shell, no package manager, about
# 2 MB. Final image = that + the stripped binary (see docs/deploy.md).

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG TARGET=x86_64-unknown-linux-gnu
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    RUSTFLAGS="-C target-feature=+crt-static"
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary
# is copied out of the cached target dir in the same step. The build fails if
# the result has any dynamic dependency (a NEEDED entry) or does not start.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --target "${TARGET}" -p pgplane \
 && install -D -m 0555 "target/${TARGET}/release/pgplane" /out/usr/local/bin/pgplane \
 && readelf -d /out/usr/local/bin/pgplane > /tmp/dynamic-section \
 && if grep -q NEEDED /tmp/dynamic-section; then \
      echo "pgplane is not static:" >&2; cat /tmp/dynamic-section >&2; exit 1; \
    fi \
 && /out/usr/local/bin/pgplane --help > /dev/null \
 && install -d -m 0750 /out/var/lib/pgplane

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="pgplane" \
      org.opencontainers.image.description="Managed PostgreSQL control plane: REST API over CloudNativePG" \
      org.opencontainers.image.source="https://github.com/pgplane/pgplane" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/usr/local/bin/pgplane /usr/local/bin/pgplane
COPY --from=build --chown=65532:65532 /out/var/lib/pgplane /var/lib/pgplane
ENV PGPLANE_LISTEN=0.0.0.0:8080 \
    PGPLANE_BACKEND=kubernetes \
    PGPLANE_DATA_DIR=/var/lib/pgplane \
    PGPLANE_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/pgplane"]
CMD ["serve"]
