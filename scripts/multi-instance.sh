#!/usr/bin/env bash
# Starts three gsp-gateway processes on different loopback ports sharing one PostgreSQL, and checks
# that a session opened on one works on the others, that disabling access through one is refused by
# another within the propagation time (reporting median and worst of 50 trials), and that a key
# rotation is honoured by all three.
#   TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test scripts/multi-instance.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
cargo test -q -p gsp-gateway-api --test process -- --ignored --nocapture three_instances
