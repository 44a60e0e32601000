#!/usr/bin/env bash
# Memory stays bounded: 100,000 distinct sessions used once each, then ten minutes of constant load,
# against a release gateway; prints the gateway's resident memory along the way.
#   bench/soak.sh                   # 100000 sessions, 10 minutes
#   SESSIONS=20000 MINUTES=1 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS="${SESSIONS:-100000}"
MINUTES="${MINUTES:-10}"
cargo build -q --release -p gsp-gateway-api --bin gsp-gateway --example soak
WORK="$(mktemp -d)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
GSP_GATEWAY_ADMIN_TOKEN=soak-admin-token-0123456789 RUST_LOG=warn target/release/gsp-gateway \
  --bind "127.0.0.1:$PORT" --database-url "sqlite://$WORK/soak.db" \
  --client-rate-per-second 10000000 --client-burst 10000000 >"$WORK/gateway.log" 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.1; done
target/release/examples/soak "http://127.0.0.1:$PORT" "sqlite://$WORK/soak.db" "$GW" "$SESSIONS" "$MINUTES"
