# gsp-gateway: a release build in a full Rust image, then only the binary on debian:bookworm-slim.
#
#   docker build -t gsp-gateway .
#   docker run -p 8080:8080 -e GSP_GATEWAY_ADMIN_TOKEN=... gsp-gateway           (SQLite in /var/lib/gsp-gateway)
#   docker run ... -e DATABASE_URL=postgres://user:pass@host/db gsp-gateway       (PostgreSQL)
#
# The cache mounts need BuildKit (the default builder since Docker 23).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# pq-sys links the system libpq; SQLite is bundled (libsqlite3-sys "bundled"), so it needs nothing here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target directory is a cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p gsp-gateway-api --locked \
 && install -D -m 0755 target/release/gsp-gateway /out/gsp-gateway

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# libpq5: the PostgreSQL client library the binary links; ca-certificates: TLS towards an https upstream,
# an https OTP webhook, or PostgreSQL with sslmode=verify-full.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gsp \
 && useradd --system --uid 10001 --gid gsp --home-dir /var/lib/gsp-gateway --shell /usr/sbin/nologin gsp \
 && install -d -o gsp -g gsp -m 0750 /var/lib/gsp-gateway
# The health check needs no curl: bash's /dev/tcp speaks one HTTP/1.1 request to /health/ready on the
# port of GSP_GATEWAY_BIND and succeeds only on a 200 (ready means the database answers too).
RUN printf '%s\n' \
      '#!/bin/bash' \
      '# Exit 0 when GET /health/ready answers 200 on this container'"'"'s listen port.' \
      'port="${GSP_GATEWAY_BIND##*:}"' \
      'exec 3<>"/dev/tcp/127.0.0.1/${port:-8080}" || exit 1' \
      'printf "GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3' \
      'IFS= read -r -t 3 status <&3 || exit 1' \
      'case "$status" in "HTTP/1."?" 200 "*) exit 0 ;; *) echo "not ready: $status"; exit 1 ;; esac' \
      > /usr/local/bin/gsp-gateway-healthcheck \
 && chmod 0755 /usr/local/bin/gsp-gateway-healthcheck
COPY --from=builder /out/gsp-gateway /usr/local/bin/gsp-gateway

USER gsp:gsp
WORKDIR /var/lib/gsp-gateway
ENV GSP_GATEWAY_BIND=0.0.0.0:8080 \
    GSP_GATEWAY_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/gsp-gateway-healthcheck"]
# SIGTERM (docker stop) drains in-flight requests for up to 30 s; give the container longer than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/gsp-gateway"]
CMD ["serve"]
