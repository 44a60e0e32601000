#!/usr/bin/env bash
# Throughput and latency of gsp-gateway against a release build, with wrk, on this machine.
#
#   bench/run.sh                 # 3 rounds, 10 s per measurement, 32 connections, 2 wrk threads
#   ROUNDS=5 DURATION=30s bench/run.sh
#   ONLY="forwarded nginx" BIN=/tmp/other/gsp-gateway bench/run.sh   # some measurements, another build
#
# Reports requests/s, p50/p99 and the server's CPU time per request, user and system (from /proc, nginx's
# workers included) for:
#   1. GET /health/live                       (the framework's floor: no auth, no state)
#   2. GET /v1/gst/taxpayer, authorized       (token check, session/window check, rate limit, sandbox)
#   3. GET /v1/gst/taxpayer forwarded         (all of 2, then proxied to an nginx-served upstream)
#   4. nginx proxy_pass to the same upstream  (the forwarding yardstick)
#   5. a GST System dialect data call         (auth-token, the same enforcement, sandbox GSTR-1 RETSUM
#                                              answered encrypted under a fresh REK with an HMAC)
# and the ratios 2/1, 3/4 and 5/2. Rate limits are raised for the run (a benchmark is one session).
#
# wrk shares the machine's cores with the gateway and nginx, and a VM's throughput drifts by ±15% from
# one ten-second window to the next. So the measurements are interleaved in rounds (every round measures
# all five), each ratio is taken within its round, and the median over the rounds is reported.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"

if [ -z "${BIN:-}" ]; then
  cargo build -q --release -p gsp-gateway-api
  BIN="$PWD/target/release/gsp-gateway"
fi
ONLY="${ONLY:-live authorized dialect forwarded nginx}"

source bench/lib.sh

UPSTREAM_PORT=$(free_port); PROXY_PORT=$(free_port); GW_PORT=$(free_port); FWD_PORT=$(free_port)
upstream_nginx "$UPSTREAM_PORT"
proxy_nginx "$PROXY_PORT" "$UPSTREAM_PORT"

start_gateway "$GW_PORT" sandbox.db --gstn-sandbox-otp 102030
start_gateway "$FWD_PORT" forward.db --upstream-url "http://127.0.0.1:$UPSTREAM_PORT"
PROXY_PID=${PIDS[1]} GW_PID=${PIDS[2]} FWD_PID=${PIDS[3]}
TOKEN=$(session_token "http://127.0.0.1:$GW_PORT")
FWD_TOKEN=$(session_token "http://127.0.0.1:$FWD_PORT")
curl -sf "http://127.0.0.1:$GW_PORT/v1/gst/taxpayer" -H "Authorization: Bearer $TOKEN" >/dev/null
curl -sf "http://127.0.0.1:$FWD_PORT/v1/gst/taxpayer" -H "Authorization: Bearer $FWD_TOKEN" >/dev/null
curl -sf "http://127.0.0.1:$PROXY_PORT/v1/gst/taxpayer" >/dev/null

# A dialect session on the sandbox gateway, as GST System software opens one: RSA-wrapped app key,
# AES-encrypted OTP (the sandbox OTP). The bench's taxpayer has a 720-hour window, longer than a token.
GW="http://127.0.0.1:$GW_PORT"
GSP2=$(curl -sf -X POST "$GW/v1/admin/gsps" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"name":"Bench GSTN GSP"}')
CID2=$(echo "$GSP2" | json '["client_id"]'); SEC2=$(echo "$GSP2" | json '["client_secret"]')
curl -sf "$GW/taxpayerapi/public-key.pem" > "$WORK/gstn.pem"
APP_KEY_HEX=$(openssl rand -hex 32)
rsa_app_key() { python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))' "$APP_KEY_HEX" | openssl pkeyutl -encrypt -pubin -inkey "$WORK/gstn.pem" -pkeyopt rsa_padding_mode:pkcs1 | base64 -w0; }
gstn_auth() { curl -sf -X POST "$GW/taxpayerapi/v1.0/authenticate" -H "clientid: $CID2" -H "client-secret: $SEC2" \
  -H 'state-cd: 24' -H 'ip-usr: 127.0.0.1' -H 'txn: BENCH0000000001' -H 'Content-Type: application/json' -d "$1"; }
gstn_auth "{\"action\":\"OTPREQUEST\",\"username\":\"bench.user\",\"app_key\":\"$(rsa_app_key)\"}" >/dev/null
OTP_FIELD=$(printf '102030' | openssl enc -aes-256-ecb -K "$APP_KEY_HEX" -nosalt | base64 -w0)
AUTH_TOKEN=$(gstn_auth "{\"action\":\"AUTHTOKEN\",\"username\":\"bench.user\",\"app_key\":\"$(rsa_app_key)\",\"otp\":\"$OTP_FIELD\"}" | json '["auth_token"]')
DIALECT_URL="$GW/taxpayerapi/v1.1/returns/gstr1?action=RETSUM&gstin=24AAUPV7468F1ZW&ret_period=112025"
DIALECT_HEADERS=(-H "clientid: $CID2" -H "client-secret: $SEC2" -H 'state-cd: 24' -H "auth-token: $AUTH_TOKEN" -H 'username: bench.user' -H 'gstin: 24AAUPV7468F1ZW')
curl -sf "$DIALECT_URL" "${DIALECT_HEADERS[@]}" | grep -q '"rek"'

measure() { # label server-pid url [header]
  local label=$1 pid=$2 url=$3 out; shift 3
  [[ " $ONLY " == *" $label "* ]] || return 0
  if [ ! -e "$WORK/$label.rps" ]; then
    wrk -t"$THREADS" -c"$CONNECTIONS" -d5s --latency "$@" "$url" >/dev/null 2>&1 || true   # warm-up
  fi
  local u0 s0 u1 s1
  read -r u0 s0 < <(cpu_ticks "$pid")
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  read -r u1 s1 < <(cpu_ticks "$pid")
  local rps p50 p99 non2xx total cpu split
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  total=$(echo "$out" | awk '/requests in/ {print $1}')
  local per_request="1e6 / $(getconf CLK_TCK) / $total"
  cpu=$(python3 -c "print(f'{($u1 - $u0 + $s1 - $s0) * $per_request:.1f}')")
  split=$(python3 -c "print(f'user {($u1 - $u0) * $per_request:.1f}, system {($s1 - $s0) * $per_request:.1f}')")
  printf '  %-12s %12s req/s   p50 %-9s p99 %-9s server CPU %5s us/req (%s) %s\n' "$label" "$rps" "$p50" "$p99" "$cpu" "$split" "${non2xx:+non-2xx: $non2xx}"
  echo "$rps" >> "$WORK/$label.rps"
  echo "$cpu" >> "$WORK/$label.cpu"
}

echo "gsp-gateway benchmark: $(nproc) cores, $ROUNDS rounds of wrk -t$THREADS -c$CONNECTIONS -d$DURATION, release build, SQLite"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  measure live "$GW_PID" "http://127.0.0.1:$GW_PORT/health/live"
  measure authorized "$GW_PID" "http://127.0.0.1:$GW_PORT/v1/gst/taxpayer" -H "Authorization: Bearer $TOKEN"
  measure dialect "$GW_PID" "$DIALECT_URL" "${DIALECT_HEADERS[@]}"
  measure forwarded "$FWD_PID" "http://127.0.0.1:$FWD_PORT/v1/gst/taxpayer" -H "Authorization: Bearer $FWD_TOKEN"
  measure nginx "$PROXY_PID" "http://127.0.0.1:$PROXY_PORT/v1/gst/taxpayer" -H "Authorization: Bearer $FWD_TOKEN"
done
python3 - "$WORK" <<'PY'
import statistics, sys
w = sys.argv[1]
import os
r = {k: [float(x) for x in open(f"{w}/{k}.rps").read().split()]
     for k in ("live", "authorized", "forwarded", "nginx", "dialect") if os.path.exists(f"{w}/{k}.rps")}
def ratios(a, b):
    return [x / y for x, y in zip(r[a], r[b])]
print("median req/s: " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in r.items()))
cpu = {k: [float(x) for x in open(f"{w}/{k}.cpu").read().split()] for k in r}
print("median server CPU us/req: " + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in cpu.items()))
for a, b, target in (("authorized", "live", 0.85), ("forwarded", "nginx", 1.00), ("dialect", "authorized", 0.80)):
    if a not in r or b not in r:
        continue
    each = ratios(a, b)
    rounds = " ".join(f"{x:.2f}" for x in each)
    by_cpu = statistics.median(cpu[b]) / statistics.median(cpu[a])
    print(f"{a + ' / ' + b:<23}= {statistics.median(each):.2f}  (target >= {target:.2f}; rounds: {rounds}; by CPU per request {by_cpu:.2f})")
PY
