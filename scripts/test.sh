#!/usr/bin/env bash
# Run the workspace tests against local Kafka (Tansu) and MongoDB (secantusd-rs) servers.
#
# Usage: scripts/test.sh [CARGO TEST ARGS...] [-- TEST BINARY ARGS...]
#   e.g. scripts/test.sh -p some-crate -- --nocapture some_test_name
#
# Steps: when CI=true `cargo fmt --check`; the build's system packages; then, while
# `cargo clippy -D warnings` (CI=true) and the test build run, install the servers if needed
# (scripts/servers.sh install) and the packages only tests need (scripts/servers.sh
# test-deps: chromium for tests/live_view.rs) in the background; start the servers on test ports;
# `cargo test --workspace --release` (--locked when Cargo.lock exists, --test-threads=2
# unless given); stop the servers on exit, whatever happens.
#
# Environment:
#   TEST_KAFKA_PORT (default 19092), TEST_MONGO_PORT (default 37017): test servers' ports,
#       chosen not to clash with the development servers on 9092/27017.
#   TEST_STATE_DIR  (default .servers-test): their pid files, logs and MongoDB data; the
#       previous run's data is wiped first unless KEEP_TEST_DATA=1.
#   TEST_THREADS    (default 2): --test-threads when not given after `--`.
#   CI=true         also run the fmt and clippy checks.
#
# The tests get: KAFKA_BROKERS, MONGO_URI, and for outage tests PIPELINE_SERVERS_SH (absolute
# path of scripts/servers.sh) with KAFKA_PORT, MONGO_PORT and PIPELINE_STATE_DIR already
# pointing at the test servers, so `"$PIPELINE_SERVERS_SH" stop-mongo` / `start-mongo` work.
set -euo pipefail
set +m

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SERVERS="$ROOT/scripts/servers.sh"

export KAFKA_PORT="${TEST_KAFKA_PORT:-19092}"
export MONGO_PORT="${TEST_MONGO_PORT:-37017}"
PIPELINE_STATE_DIR="${TEST_STATE_DIR:-$ROOT/.servers-test}"
case "$PIPELINE_STATE_DIR" in /*) ;; *) PIPELINE_STATE_DIR="$ROOT/$PIPELINE_STATE_DIR" ;; esac
export PIPELINE_STATE_DIR
export PIPELINE_SERVERS_SH="$SERVERS"
CARGO_BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
if [[ -d "$CARGO_BIN_DIR" && ":$PATH:" != *":$CARGO_BIN_DIR:"* ]]; then
    export PATH="$CARGO_BIN_DIR:$PATH"
fi

now_s() { date +%s; }
T_START="$(now_s)"
SUMMARY=()
CURRENT=""
PHASE_T0=0

log() { printf '\n[test] %s\n' "$*"; }

phase_begin() {
    CURRENT="$1"
    PHASE_T0="$(now_s)"
    log "==> $CURRENT"
}

phase_end() {
    local dt=$(($(now_s) - PHASE_T0))
    SUMMARY+=("$(printf '%-28s %5ss  ok' "$CURRENT" "$dt")")
    log "<== $CURRENT: ok (${dt}s)"
    CURRENT=""
}

SERVERS_STARTED=0
INSTALL_PID=""
on_exit() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$INSTALL_PID" ]]; then kill "$INSTALL_PID" 2>/dev/null || true; fi
    if [[ -n "$CURRENT" ]]; then
        SUMMARY+=("$(printf '%-28s %5ss  FAILED (exit %s)' "$CURRENT" $(($(now_s) - PHASE_T0)) "$rc")")
    fi
    if ((SERVERS_STARTED)); then
        if ((rc != 0)); then
            log "test run failed; server logs:"
            bash "$SERVERS" logs || true
        fi
        log "stopping test servers"
        bash "$SERVERS" stop || true
    fi
    log "summary ($(($(now_s) - T_START))s total):"
    if ((${#SUMMARY[@]})); then printf '  %s\n' "${SUMMARY[@]}"; fi
    if ((rc == 0)); then log "PASSED"; else log "FAILED (exit $rc)"; fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Split "$@" into cargo's own arguments and the test binaries' arguments (after `--`).
cargo_args=()
bin_args=()
after_dashes=0
for arg in "$@"; do
    if ((after_dashes)); then
        bin_args+=("$arg")
    elif [[ "$arg" == "--" ]]; then
        after_dashes=1
    else
        cargo_args+=("$arg")
    fi
done
has_threads=0
for arg in "${bin_args[@]}"; do
    [[ "$arg" == --test-threads* ]] && has_threads=1
done
((has_threads)) || bin_args=("--test-threads=${TEST_THREADS:-2}" "${bin_args[@]}")
workspace=(--workspace)
for arg in "${cargo_args[@]}"; do
    case "$arg" in -p | -p* | --package | --package=* | --manifest-path*) workspace=() ;; esac
done
locked=()
[[ -f Cargo.lock ]] && locked=(--locked)

if [[ "${CI:-}" == "true" ]]; then
    phase_begin "cargo fmt --check"
    cargo fmt --all -- --check
    phase_end
fi

# The servers' installation (the MongoDB-protocol server is built from source the first
# time, ~5 min with long single-threaded stretches) runs in the background while the
# project builds; the build only needs its system packages first.
phase_begin "install build packages"
bash "$SERVERS" build-deps
phase_end

INSTALL_LOG="$(mktemp)"
( bash "$SERVERS" install && bash "$SERVERS" test-deps ) >"$INSTALL_LOG" 2>&1 &
INSTALL_PID=$!
log "installing the servers and test packages in the background (pid $INSTALL_PID)"

if [[ "${CI:-}" == "true" ]]; then
    phase_begin "cargo clippy"
    cargo clippy --workspace --all-targets --release "${locked[@]}" -- -D warnings
    phase_end
fi

phase_begin "build tests"
cargo test "${workspace[@]}" --release "${locked[@]}" "${cargo_args[@]}" --no-run
phase_end

phase_begin "install servers (background)"
install_status=0
wait "$INSTALL_PID" || install_status=$?
INSTALL_PID=""
cat "$INSTALL_LOG"
rm -f "$INSTALL_LOG"
if ((install_status != 0)); then
    log "installing the servers failed (exit $install_status)"
    exit "$install_status"
fi
phase_end

phase_begin "start servers"
if [[ "${KEEP_TEST_DATA:-0}" != "1" ]]; then
    # Leftovers of an interrupted run: stop them and start from empty MongoDB storage.
    bash "$SERVERS" stop >/dev/null
    rm -rf "${PIPELINE_STATE_DIR:?}/mongo-data" "$PIPELINE_STATE_DIR"/*.log
fi
SERVERS_STARTED=1
bash "$SERVERS" start
eval "$(bash "$SERVERS" env)"
export KAFKA_BROKERS MONGO_URI
log "KAFKA_BROKERS=$KAFKA_BROKERS MONGO_URI=$MONGO_URI PIPELINE_STATE_DIR=$PIPELINE_STATE_DIR"
phase_end

phase_begin "cargo test"
test_cmd=(cargo test "${workspace[@]}" --release "${locked[@]}" "${cargo_args[@]}" -- "${bin_args[@]}")
printf '[test] +'
printf ' %q' "${test_cmd[@]}"
printf '\n'
"${test_cmd[@]}"
phase_end
