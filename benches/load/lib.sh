# Shared by benches/load/run.sh and benches/load/soak.sh (sourced, not run):
# the binaries, a scratch directory, the fixed-answer upstream, serve, and
# the check that an answer is the upstream's, unchanged.
#
# The sourcing script sets ROOT, UPSTREAM_PORT, SERVE_PORT and WORKERS, and
# may set PORTCULLIS and HELPER to binaries already built.

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

command -v curl >/dev/null || { echo "curl is missing" >&2; exit 2; }

if [ -z "${PORTCULLIS:-}" ] || [ -z "${HELPER:-}" ]; then
    echo "building (release): portcullis and the load helper" >&2
    (cd "$ROOT" && cargo build --quiet --release --locked --bin portcullis --example load-helper)
    PORTCULLIS=$TARGET/release/portcullis
    HELPER=$TARGET/release/examples/load-helper
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# empty.wasm, typical.json, authorization.txt, call-*.json, answer.json.
"$HELPER" write "$WORK"

start_upstream() {
    "$HELPER" upstream "127.0.0.1:$UPSTREAM_PORT" "$WORK/answer.json" >"$WORK/upstream.log" 2>&1 &
    PIDS+=($!)
}

# Waits until URL answers BODY with exactly the upstream's answer (a clean
# answer passes every filter unchanged): a refusal would be measured as
# fast answers otherwise.
check() {
    local url=$1 body=$2 i
    for i in $(seq 1 100); do
        if curl -sf -o "$WORK/got" -X POST "$url" \
            -H 'Content-Type: application/json' \
            -H 'Accept: application/json, text/event-stream' \
            -H 'MCP-Protocol-Version: 2025-11-25' \
            -H "Authorization: $(cat "$WORK/authorization.txt")" \
            --data-binary "@$body" 2>/dev/null; then
            if cmp -s "$WORK/got" "$WORK/answer.json"; then return 0; fi
            echo "$url did not forward the answer unchanged:" >&2
            head -c 600 "$WORK/got" >&2; echo >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$url did not answer" >&2
    return 1
}

# serve ARGS...: portcullis serve in front of the upstream, in the
# background (SERVE_PID).
serve() {
    "$PORTCULLIS" serve --listen "127.0.0.1:$SERVE_PORT" \
        --upstream "http://127.0.0.1:$UPSTREAM_PORT" \
        --workers "$WORKERS" --log-level warn "$@" >"$WORK/serve.log" 2>&1 &
    SERVE_PID=$!
    PIDS+=($SERVE_PID)
}

stop_serve() {
    kill "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
}

# The machine, for the figures' caption.
machine() {
    echo "$(nproc) CPUs, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(free -g | awk '/^Mem:/ {print $2}') GiB"
}
