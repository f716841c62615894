#!/usr/bin/env bash
# Builds and runs Portcullis's fuzz targets (fuzz/fuzz_targets), one at a
# time, and prints a summary table: executions, wall time, exec/s, result.
#
#   fuzz/run.sh                      every target, 10,000,000 executions each
#   fuzz/run.sh sse route            only those targets
#   fuzz/run.sh --runs 100000 ids    a given number of executions
#   fuzz/run.sh --time 600 exchange  a time budget (seconds) per target
#   fuzz/run.sh --smoke              every target for a few thousand runs (CI)
#   fuzz/run.sh --list               the targets
#
# Works on a fresh machine with the stable toolchain: cargo-fuzz (pinned
# below) is installed from crates.io if missing, and its -Z flags are let
# through with RUSTC_BOOTSTRAP=1. No nightly is needed.
#
# Where things go (all outside the repository):
#   FUZZ_TARGET_DIR  build output      (default ~/.cache/portcullis/t-fuzz)
#   FUZZ_WORK        corpora and crashes (default ~/.cache/portcullis/fuzz-work):
#                    $FUZZ_WORK/corpus/<target>/    what the fuzzer learnt
#                    $FUZZ_WORK/artifacts/<target>/ crash-*, timeout-*, oom-*
# fuzz/regressions/<target>/ seeds each run and is replayed by
# `cargo test --test fuzz_regressions` (see fuzz/README.md).
#
# Other knobs: FUZZ_SANITIZER (default none: the engine is safe Rust, and
# ASan halves the speed; `address` works too), FUZZ_TIMEOUT (seconds one
# input may take before it counts as a hang, default 60), FUZZ_NICE (default
# 10), FUZZ_ARGS (more libFuzzer flags). One fuzzer process runs at a time.
# Exit status: 0 when every target ran clean, 1 when one found a failure.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
DEFAULT_RUNS=10000000
SMOKE_RUNS=5000

here="$(cd "$(dirname "$0")" && pwd)"
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/portcullis/t-fuzz}"
work="${FUZZ_WORK:-$HOME/.cache/portcullis/fuzz-work}"
sanitizer="${FUZZ_SANITIZER:-none}"
timeout="${FUZZ_TIMEOUT:-60}"
nice_level="${FUZZ_NICE:-10}"

all_targets() {
  sed -n 's/^name = "\(.*\)"$/\1/p' "$here/Cargo.toml" | grep -v '^portcullis-fuzz$'
}

runs=$DEFAULT_RUNS
time_budget=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --runs=*) runs="${1#--runs=}"; shift ;;
    --time) time_budget="$2"; shift 2 ;;
    --time=*) time_budget="${1#--time=}"; shift ;;
    --smoke) runs=$SMOKE_RUNS; time_budget=""; shift ;;
    --list) all_targets; exit 0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(all_targets)
fi
for t in "${targets[@]}"; do
  if ! all_targets | grep -qx "$t"; then
    echo "no fuzz target $t (fuzz/run.sh --list)" >&2
    exit 2
  fi
done

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

export RUSTC_BOOTSTRAP=1
cd "$here"
echo "== building ${targets[*]} (sanitizer: $sanitizer, into $target_dir)"
for t in "${targets[@]}"; do
  nice -n "$nice_level" cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir" "$t"
done
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$triple/release"

if [ -n "$time_budget" ]; then
  limit=(-max_total_time="$time_budget" -runs=-1)
  echo "== running each target for ${time_budget}s"
else
  limit=(-runs="$runs")
  echo "== running each target for $runs executions"
fi

declare -a rows
failed=0
for t in "${targets[@]}"; do
  corpus="$work/corpus/$t"
  artifacts="$work/artifacts/$t"
  seeds="$here/regressions/$t"
  mkdir -p "$corpus" "$artifacts" "$seeds"
  log="$work/$t.log"
  echo "-- $t (log: $log)"
  start=$(date +%s.%N)
  set +e
  # shellcheck disable=SC2086
  nice -n "$nice_level" "$bin_dir/$t" "$corpus" "$seeds" "${limit[@]}" \
    -artifact_prefix="$artifacts/" -timeout="$timeout" -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1
  status=$?
  set -e
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ -z "$executed" ]; then
    executed=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -1)
  fi
  executed=${executed:-0}
  rate=$(awk -v n="$executed" -v s="$secs" 'BEGIN { printf "%d", (s > 0 ? n / s : 0) }')
  if [ $status -eq 0 ]; then
    result="ok"
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FAILED (exit $status) ${artifact:-see log}"
    tail -n 30 "$log" | sed 's/^/    /'
  fi
  rows+=("$(printf '%-18s %12s %10s %10s  %s' "$t" "$executed" "$secs" "$rate" "$result")")
done

echo
echo "== summary"
printf '%-18s %12s %10s %10s  %s\n' target executions seconds exec/s result
for r in "${rows[@]}"; do
  echo "$r"
done
exit $failed
