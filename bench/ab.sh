#!/usr/bin/env bash
# Two release builds of the forwarding gateway and nginx `proxy_pass`, measured in interleaved rounds
# against the same nginx upstream: for telling whether a change to the hot path made a forwarded call
# cheaper, on a VM whose speed drifts from one ten-second window to the next.
#
#   A=/tmp/before/gsp-gateway B=target/release/gsp-gateway bench/ab.sh
#   ROUNDS=10 DURATION=5s A=… B=… bench/ab.sh
#
# Prints each round's requests/s and server CPU per request (user and system, from /proc), then the
# medians, B's user time against A's, and each build's throughput against nginx's, round by round.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-10}"
DURATION="${DURATION:-5s}"
: "${A:?A=path of the first gateway binary}" "${B:?B=path of the second}"
A=$(realpath "$A"); B=$(realpath "$B")
source bench/lib.sh

UPSTREAM_PORT=$(free_port); PROXY_PORT=$(free_port); A_PORT=$(free_port); B_PORT=$(free_port)
upstream_nginx "$UPSTREAM_PORT"
proxy_nginx "$PROXY_PORT" "$UPSTREAM_PORT"
PROXY_PID=${PIDS[1]}
BIN=$A start_gateway "$A_PORT" a.db --upstream-url "http://127.0.0.1:$UPSTREAM_PORT"
A_PID=${PIDS[-1]}; A_TOKEN=$(session_token "http://127.0.0.1:$A_PORT")
BIN=$B start_gateway "$B_PORT" b.db --upstream-url "http://127.0.0.1:$UPSTREAM_PORT"
B_PID=${PIDS[-1]}; B_TOKEN=$(session_token "http://127.0.0.1:$B_PORT")

measure() { # label pid port token
  local u0 s0 u1 s1 out
  read -r u0 s0 < <(cpu_ticks "$2")
  out=$(wrk -t2 -c32 -d"$DURATION" -H "Authorization: Bearer $4" "http://127.0.0.1:$3/v1/gst/taxpayer")
  read -r u1 s1 < <(cpu_ticks "$2")
  echo "$out" | awk -v label="$1" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v hz="$(getconf CLK_TCK)" '
    /requests in/ {n = $1} /Requests\/sec/ {rps = $2}
    END {k = 1e6 / hz / n; printf "%s %.0f %.2f %.2f\n", label, rps, du * k, ds * k}' | tee -a "$WORK/ab"
}
for url in "$A_PORT $A_TOKEN" "$B_PORT $B_TOKEN" "$PROXY_PORT $A_TOKEN"; do
  set -- $url; wrk -t2 -c32 -d3s -H "Authorization: Bearer $2" "http://127.0.0.1:$1/v1/gst/taxpayer" >/dev/null
done
echo "label req/s user_us system_us (per forwarded call)"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  measure A "$A_PID" "$A_PORT" "$A_TOKEN"
  measure B "$B_PID" "$B_PORT" "$B_TOKEN"
  measure nginx "$PROXY_PID" "$PROXY_PORT" "$A_TOKEN"
done
python3 - "$WORK/ab" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    label, rps, user, system = line.split()
    rows[label].append((float(rps), float(user), float(system)))
for label, values in rows.items():
    rps, user, system = (statistics.median(v) for v in zip(*values))
    print(f"median {label:5}: {rps:8.0f} req/s, user {user:.2f} us, system {system:.2f} us per call")
ratio = [b[1] / a[1] for a, b in zip(rows["A"], rows["B"])]
print(f"B's user time per call / A's: {statistics.median(ratio):.3f} (rounds: {' '.join(f'{r:.2f}' for r in ratio)})")
for label in "AB":
    each = [x[0] / n[0] for x, n in zip(rows[label], rows["nginx"])]
    print(f"{label} / nginx by req/s: {statistics.median(each):.2f} (rounds: {' '.join(f'{r:.2f}' for r in each)})")
PY
