#!/usr/bin/env bash
# End-to-end load figures (issue 16, target 6): p50, p99 and requests/s of a
# tools/call (1 KiB of arguments, a bearer token, a 4 KiB JSON answer)
# through wrk, at each connection count, for
#
#   direct    wrk -> the fixed-answer upstream
#   empty     wrk -> portcullis serve running an empty proxy-wasm module -> upstream
#   example   wrk -> portcullis serve, Portcullis on examples/bundle (tool echo) -> upstream
#   typical   wrk -> portcullis serve, Portcullis on the typical bundle of
#             benches/support/typical.rs (100 rules with CEL, a cached RS256
#             token, the default content policy both ways) -> upstream
#
# Traffic stays on 127.0.0.1. Needs wrk (Debian: apt-get install wrk) and
# curl. Not part of the tests: run it by hand, on an otherwise idle machine,
# and say what the load average was (it is printed).
#
#   benches/load/run.sh                    # 1 and 16 connections, 10 s each
#   CONNECTIONS="1 4 16" DURATION=30s WORKERS=2 benches/load/run.sh
#
# PORTCULLIS=path HELPER=path use binaries already built (no cargo build).
# WORKERS is serve's --workers (one VM each, as Envoy's --concurrency). The
# upstream runs on one thread and wrk on one thread, on the same machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONNECTIONS=${CONNECTIONS:-"1 16"}
DURATION=${DURATION:-10s}
WORKERS=${WORKERS:-1}
CASES=${CASES:-"direct empty example typical"}
UPSTREAM_PORT=${UPSTREAM_PORT:-18090}
SERVE_PORT=${SERVE_PORT:-18091}

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }
. "$ROOT/benches/load/lib.sh"

: >"$WORK/empty-config"
cat >"$WORK/post.lua" <<'EOF'
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
wrk.method = "POST"
wrk.body = slurp(os.getenv("LOAD_BODY"))
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
wrk.headers["Authorization"] = slurp(os.getenv("LOAD_AUTH"))
EOF

start_upstream

# to_us "123.45us" | "1.20ms" | "2.00s" -> microseconds
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print n }'
}

ROWS=()
measure() {
    local name=$1 url=$2 body=$3 c out p50 p99 rps errors
    check "$url" "$body"
    for c in $CONNECTIONS; do
        # A short warm-up (VM caches, token cache, connection pool).
        LOAD_BODY=$body LOAD_AUTH=$WORK/authorization.txt \
            wrk -t1 -c"$c" -d2s -s "$WORK/post.lua" "$url" >/dev/null
        out=$(LOAD_BODY=$body LOAD_AUTH=$WORK/authorization.txt \
            wrk -t1 -c"$c" -d"$DURATION" --latency -s "$WORK/post.lua" "$url")
        errors=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}')
        if [ -n "$errors" ]; then
            echo "$name at $c connections: $errors" >&2
            exit 1
        fi
        p50=$(to_us "$(echo "$out" | awk '$1 == "50%" {print $2}')")
        p99=$(to_us "$(echo "$out" | awk '$1 == "99%" {print $2}')")
        rps=$(echo "$out" | awk '/^Requests\/sec:/ {printf "%d", $2}')
        ROWS+=("$(printf '| %-8s | %3s | %8.0f µs | %8.0f µs | %8s |' "$name" "$c" "$p50" "$p99" "$rps")")
        echo "${ROWS[-1]}" >&2
    done
}

URL_UP="http://127.0.0.1:$UPSTREAM_PORT/mcp"
URL="http://127.0.0.1:$SERVE_PORT/mcp"
for case in $CASES; do
    case $case in
        direct) measure direct "$URL_UP" "$WORK/call-echo.json" ;;
        empty)
            serve --filter "$WORK/empty.wasm" --filter-config "$WORK/empty-config"
            measure empty "$URL" "$WORK/call-echo.json"
            stop_serve ;;
        example)
            serve --bundle "$ROOT/examples/bundle"
            measure example "$URL" "$WORK/call-echo.json"
            stop_serve ;;
        typical)
            serve --filter-config "$WORK/typical.json"
            measure typical "$URL" "$WORK/call-typical.json"
            stop_serve ;;
        *) echo "unknown case $case" >&2; exit 2 ;;
    esac
done

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(machine), serve --workers $WORKERS, wrk -t1 -d$DURATION"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| case     |   c |      p50     |      p99     |    req/s |"
echo "| -------- | --- | ------------ | ------------ | -------- |"
printf '%s\n' "${ROWS[@]}"
