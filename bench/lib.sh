# Shared by bench/run.sh, bench/ab.sh and bench/instructions.sh (sourced, not run): the load tools, a
# scratch directory and the processes to stop at exit, nginx instances, release gateways, CPU time, and
# one provisioned session.
command -v wrk >/dev/null 2>&1 && command -v nginx >/dev/null 2>&1 && command -v valgrind >/dev/null 2>&1 ||
  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk nginx-light valgrind >/dev/null; }
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
wait_up() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }

# Two nginx instances: the upstream (one worker) and the yardstick proxy (a worker per core, like the
# gateway's default). Kept apart so that the proxy, like the gateway, reaches its upstream in another
# process: one nginx serving both in a single event loop would skip the cross-process wake-ups that
# any real proxy pays.
nginx_instance() { # name worker_processes server-block
  mkdir -p "$WORK/$1"
  cat > "$WORK/$1/nginx.conf" <<NGINX
worker_processes $2;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  $3
}
NGINX
  nginx -c "$WORK/$1/nginx.conf" -p "$WORK/$1"
  PIDS+=("$(cat "$WORK/$1/nginx.pid")")
}
# The upstream every forwarded call reaches: nginx answering a small JSON body (one worker).
upstream_nginx() { # port
  local UPSTREAM_PORT=$1
  nginx_instance upstream 1 "server {
      listen 127.0.0.1:$UPSTREAM_PORT;
      location / { default_type application/json; return 200 '{\"gstin\":\"24AAUPV7468F1ZW\",\"legal_name\":\"Bench Traders\",\"status\":\"Active\"}'; }
    }"
}

# The yardstick: nginx `proxy_pass` to the upstream at port $2, with keep-alive upstream connections,
# a worker per core (like the gateway's default) and the caller's `Authorization` removed.
proxy_nginx() { # port upstream-port
  nginx_instance proxy auto "upstream backend { server 127.0.0.1:$2; keepalive 64; }
  server {
    listen 127.0.0.1:$1;
    location /v1/gst/ {
      proxy_pass http://backend/;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Authorization \"\";
    }
  }"
}

# Server CPU time (user and system clock ticks) of a process and its children (nginx's workers).
cpu_ticks() { # pid
  local u=0 s=0 p f
  for p in "$1" $(pgrep -P "$1"); do read -r -a f < "/proc/$p/stat"; u=$((u + f[13])); s=$((s + f[14])); done
  echo "$u $s"
}

ADMIN=bench-admin-token-0123456789
start_gateway() { # port db [extra flags...]
  local port=$1 db=$2; shift 2
  GSP_GATEWAY_ADMIN_TOKEN=$ADMIN RUST_LOG=warn "$BIN" --bind "127.0.0.1:$port" --database-url "sqlite://$WORK/$db" \
    --session-rate-per-second 10000000 --session-burst 10000000 --client-rate-per-second 10000000 --client-burst 10000000 \
    "$@" >"$WORK/$db.log" 2>&1 &
  PIDS+=("$!")
  wait_up "http://127.0.0.1:$port/health/ready"
}
# One session on a gateway: provision, enable access, OTP through the inbox, token.
session_token() { # base
  local gw=$1 tp gsp cid sec otp
  curl -sf -X POST "$gw/v1/admin/taxpayers" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d '{"gstin":"24AAUPV7468F1ZW","username":"bench.user","password":"Bench-Pass-2026","legal_name":"Bench Traders"}' >/dev/null
  gsp=$(curl -sf -X POST "$gw/v1/admin/gsps" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"name":"Bench GSP"}')
  cid=$(echo "$gsp" | json '["client_id"]'); sec=$(echo "$gsp" | json '["client_secret"]')
  tp=$(curl -sf -X POST "$gw/v1/taxpayer/login" -H 'Content-Type: application/json' \
    -d '{"username":"bench.user","password":"Bench-Pass-2026"}' | json '["access_token"]')
  curl -sf -X PUT "$gw/v1/taxpayer/api-access" -H "Authorization: Bearer $tp" -H 'Content-Type: application/json' \
    -d '{"enabled":true,"duration_hours":720}' >/dev/null
  curl -sf -X POST "$gw/v1/gsp/otp" -u "$cid:$sec" -H 'Content-Type: application/json' \
    -d '{"gstin":"24AAUPV7468F1ZW","username":"bench.user"}' >/dev/null
  otp=$(curl -sf "$gw/v1/taxpayer/otp-requests" -H "Authorization: Bearer $tp" | json '[0]["code"]')
  curl -sf -X POST "$gw/v1/gsp/token" -u "$cid:$sec" -H 'Content-Type: application/json' \
    -d "{\"grant_type\":\"otp\",\"gstin\":\"24AAUPV7468F1ZW\",\"username\":\"bench.user\",\"otp\":\"$otp\"}" | json '["access_token"]'
}

