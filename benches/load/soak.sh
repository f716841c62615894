#!/usr/bin/env bash
# The soak (issue 16, item 7): REQUESTS typical tools/calls (1 KiB of
# arguments, a cached RS256 token, the typical bundle of
# benches/support/typical.rs: 100 rules with CEL, the default content policy
# both ways; a 4 KiB JSON answer) through `portcullis serve` to the
# fixed-answer upstream, in SEGMENTS segments. After each segment it reads
# serve's admin /stats/prometheus: each worker VM's wasm linear memory
# (host_shim_wasm_vm_memory_bytes) and serve's resident memory
# (process_resident_memory_bytes). Prints a row per segment (requests, p50,
# p99, requests/s, VM memory, RSS), then the verdict: every answer must be
# the upstream's, byte for byte; VM linear memory after the last segment
# must equal what it was after the warm-up; serve's RSS may grow by at most
# RSS_KIB. Exits 1 otherwise. The load generator is `load-helper soak`
# (benches/load/driver.rs, also run by tests/soak.rs): one thread,
# CONNECTIONS keep-alive connections, closed loop as wrk's.
#
#   benches/load/soak.sh                           # 1,000,000 requests, 20 segments
#   REQUESTS=100000 CONNECTIONS=4 WORKERS=1 benches/load/soak.sh
#
# PORTCULLIS=path HELPER=path use binaries already built (no cargo build).
# Traffic stays on 127.0.0.1; say what the load average was (it is printed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REQUESTS=${REQUESTS:-1000000}
SEGMENTS=${SEGMENTS:-20}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-16}
WORKERS=${WORKERS:-2}
# A leak of 8 bytes a request shows as 7 MiB over 900,000 requests.
RSS_KIB=${RSS_KIB:-4096}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
SERVE_PORT=${SERVE_PORT:-18091}
ADMIN_PORT=${ADMIN_PORT:-18092}

. "$ROOT/benches/load/lib.sh"

start_upstream
serve --filter-config "$WORK/typical.json" --admin "127.0.0.1:$ADMIN_PORT"
check "http://127.0.0.1:$SERVE_PORT/mcp" "$WORK/call-typical.json"

echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(machine), serve --workers $WORKERS, $REQUESTS requests over $CONNECTIONS connections"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
status=0
"$HELPER" soak "127.0.0.1:$SERVE_PORT" "127.0.0.1:$ADMIN_PORT" "$WORK" \
    "$REQUESTS" "$SEGMENTS" "$CONNECTIONS" "$WARMUP" "$RSS_KIB" || status=$?
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
