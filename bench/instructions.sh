#!/usr/bin/env bash
# Instructions per forwarded call, counted by callgrind: a measure of the gateway's own CPU work that,
# unlike requests/s on a shared VM, does not drift from one run to the next, so a small change to the
# hot path can be judged in one run.
#
#   bench/instructions.sh                      # builds the release binary, 8 s of load
#   BIN=/tmp/other/gsp-gateway DURATION=4s bench/instructions.sh
#
# Starts the nginx upstream and a forwarding gateway, provisions a session, restarts the gateway under
# `valgrind --tool=callgrind` (one worker) on the same database, warms it up, zeroes the counts, sends
# `wrk` load for DURATION, and divides the instructions by the calls served. Counts are of user space
# only. Under valgrind SHA-256 runs without the CPU's SHA extensions and `rep stosb` counts one
# instruction per byte, so those weigh more than they cost natively; compare builds, not absolutes.
# The profile stays in $OUT (default target/callgrind.out) for `callgrind_annotate`.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-8s}"
OUT="${OUT:-$PWD/target/callgrind.out}"

if [ -z "${BIN:-}" ]; then
  cargo build -q --release -p gsp-gateway-api
  BIN="$PWD/target/release/gsp-gateway"
fi
source bench/lib.sh

UPSTREAM_PORT=$(free_port); FWD_PORT=$(free_port)
upstream_nginx "$UPSTREAM_PORT"
start_gateway "$FWD_PORT" forward.db --upstream-url "http://127.0.0.1:$UPSTREAM_PORT"
FWD_TOKEN=$(session_token "http://127.0.0.1:$FWD_PORT")
# The provisioning (password hashing, key generation) is done: the same database under callgrind.
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
GSP_GATEWAY_ADMIN_TOKEN=$ADMIN RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
  "$BIN" --bind "127.0.0.1:$FWD_PORT" --database-url "sqlite://$WORK/forward.db" --workers 1 \
  --session-rate-per-second 10000000 --session-burst 10000000 --client-rate-per-second 10000000 --client-burst 10000000 \
  --upstream-url "http://127.0.0.1:$UPSTREAM_PORT" >"$WORK/callgrind.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$FWD_PORT/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
URL="http://127.0.0.1:$FWD_PORT/v1/gst/taxpayer"
curl -sf "$URL" -H "Authorization: Bearer $FWD_TOKEN" >/dev/null
wrk -t1 -c8 -d3s "$URL" -H "Authorization: Bearer $FWD_TOKEN" >/dev/null
callgrind_control -z "${PIDS[-1]}" >/dev/null 2>&1
out=$(wrk -t1 -c8 -d"$DURATION" "$URL" -H "Authorization: Bearer $FWD_TOKEN")
callgrind_control -d "${PIDS[-1]}" >/dev/null 2>&1
calls=$(echo "$out" | awk '/requests in/ {print $1}')
if echo "$out" | grep -q 'Non-2xx'; then echo "some calls failed:"; echo "$out"; exit 1; fi
dump=$(ls "$WORK"/callgrind.out.* | head -1)
instructions=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
echo "forwarded calls: $calls in $DURATION under callgrind; instructions: $instructions; per call: $((instructions / calls))"
mkdir -p "$(dirname "$OUT")" && cp "$dump" "$OUT"
