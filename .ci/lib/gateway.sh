# shellcheck shell=bash
# Sourced by .ci/schemathesis.sh and .ci/sdk.sh: runs the release gateway on a free loopback port with a
# fresh SQLite database in a temporary directory, and stops it (and removes the directory) on exit.
#
#   gateway_start [extra serve flags...]   sets GW (base URL), ADMIN_TOKEN, GATEWAY_DIR, GATEWAY_PID
#   gateway_stop                           idempotent; call it from the caller's EXIT trap

GATEWAY_BIN="${GATEWAY_BIN:-target/release/gsp-gateway}"
GATEWAY_PID=""
GATEWAY_DIR=""

gateway_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

gateway_stop() {
  if [[ -n "$GATEWAY_PID" ]] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
    kill -TERM "$GATEWAY_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$GATEWAY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  GATEWAY_PID=""
  if [[ -n "$GATEWAY_DIR" && -d "$GATEWAY_DIR" ]]; then
    rm -rf "$GATEWAY_DIR"
  fi
  GATEWAY_DIR=""
}

gateway_start() {
  [[ -x "$GATEWAY_BIN" ]] || { echo "no gateway binary at $GATEWAY_BIN" >&2; return 1; }
  GATEWAY_DIR="$(mktemp -d "${TMPDIR:-/tmp}/gsp-gateway-ci.XXXXXX")"
  ADMIN_TOKEN="ci-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  local port
  port="$(gateway_free_port)"
  GW="http://127.0.0.1:$port"
  # Settings without a flag live in the TOML file; flags override the environment, which overrides the file.
  cat >"$GATEWAY_DIR/gateway.toml" <<TOML
taxpayer_token_ttl_secs = 7200
TOML
  GSP_GATEWAY_ADMIN_TOKEN="$ADMIN_TOKEN" "$GATEWAY_BIN" --config "$GATEWAY_DIR/gateway.toml" \
    --bind "127.0.0.1:$port" --database-url "sqlite://$GATEWAY_DIR/gateway.db" \
    --otp-delivery inbox --log-format text "$@" serve >"$GATEWAY_DIR/gateway.log" 2>&1 &
  GATEWAY_PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$GW/health/ready" 2>/dev/null; then
      echo "gateway $GATEWAY_PID listening on $GW (database in $GATEWAY_DIR)"
      return 0
    fi
    if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "the gateway did not become ready; its log:" >&2
  cat "$GATEWAY_DIR/gateway.log" >&2 || true
  return 1
}

# Prints the gateway's log (for a failed run).
gateway_log() {
  [[ -n "$GATEWAY_DIR" && -f "$GATEWAY_DIR/gateway.log" ]] && tail -n "${1:-200}" "$GATEWAY_DIR/gateway.log"
}
