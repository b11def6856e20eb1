#!/usr/bin/env bash
# The main job: the BTCUSDT pipeline (pipelines/btcusdt.yaml), all stages in one process.
#
# Usage: scripts/run.sh [--mock-binance] [--pipeline FILE] [-- extra `pipeline run` arguments]
#
#   --mock-binance   poll the local Binance mock instead of the real API (offline demos);
#                    the same as BINANCE_MOCK=1.
#   --pipeline FILE  run another pipeline file (default pipelines/btcusdt.yaml), e.g.
#                    pipelines/trades.yaml.
#
# When neither KAFKA_BROKERS nor MONGO_URI is set, installs (first time only) and starts a
# local Kafka-protocol broker and MongoDB-protocol server on 127.0.0.1:9092 / :27017 with
# scripts/servers.sh; they keep running after the pipeline stops, so the results can be
# queried (stop them with `scripts/servers.sh stop`). Metrics are served on
# http://${METRICS_ADDR:-127.0.0.1:9898}/metrics (watch them with `pipeline top`).
# Ctrl-C stops the pipeline gracefully.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MOCK="${BINANCE_MOCK:-0}"
PIPELINE_FILE="pipelines/btcusdt.yaml"
EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --mock-binance) MOCK=1 ;;
        --pipeline)
            [[ $# -ge 2 ]] || { echo "--pipeline needs a file" >&2; exit 2; }
            PIPELINE_FILE="$2"; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { printf '[run] %s\n' "$*" >&2; }

MOCK_PID=""
BUILD_PID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [[ -n "$MOCK_PID" ]]; then kill "$MOCK_PID" 2>/dev/null || true; fi
    if [[ -n "$BUILD_PID" ]]; then kill "$BUILD_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

# The release build and the servers' installation (the MongoDB-protocol server is built
# from source the first time) run at the same time: each has long single-threaded
# stretches (build scripts of C libraries, linking) that leave a core idle.
say "building (release) in the background"
scripts/servers.sh build-deps
# The mock is built only when used: it is ~2 % of a cold build.
BUILD_ARGS=(-p pipeline --bin pipeline)
[[ "$MOCK" == 1 ]] && BUILD_ARGS+=(-p binance-mock --bin binance-mock)
cargo build --release --quiet "${BUILD_ARGS[@]}" &
BUILD_PID=$!

if [[ -z "${KAFKA_BROKERS:-}" && -z "${MONGO_URI:-}" ]]; then
    say "no KAFKA_BROKERS / MONGO_URI given: starting local servers"
    scripts/servers.sh install
    scripts/servers.sh start
    eval "$(scripts/servers.sh env)"
    export KAFKA_BROKERS MONGO_URI
fi
: "${KAFKA_BROKERS:?set KAFKA_BROKERS too when MONGO_URI is set}"
: "${MONGO_URI:?set MONGO_URI too when KAFKA_BROKERS is set}"

say "waiting for the release build"
build_status=0
wait "$BUILD_PID" || build_status=$?
BUILD_PID=""
if ((build_status != 0)); then
    echo "the release build failed (exit $build_status)" >&2
    exit "$build_status"
fi

if [[ "$MOCK" == 1 ]]; then
    MOCK_OUT="$(mktemp)"
    target/release/binance-mock --listen 127.0.0.1:0 --symbols BTCUSDT,ETHUSDT > "$MOCK_OUT" &
    MOCK_PID=$!
    for _ in $(seq 1 100); do
        [[ -s "$MOCK_OUT" ]] && break
        sleep 0.05
    done
    MOCK_ADDR="$(head -n 1 "$MOCK_OUT" | grep -oE '[0-9.]+:[0-9]+' | head -n 1)"
    [[ -n "$MOCK_ADDR" ]] || { echo "the Binance mock did not start" >&2; exit 1; }
    export BINANCE_BASE_URLS="[http://$MOCK_ADDR]"
    # The same mock serves the WebSocket streams (for pipelines using binance_ws).
    export BINANCE_WS_BASE_URLS="[ws://$MOCK_ADDR]"
    say "using the local Binance mock at http://$MOCK_ADDR"
fi

METRICS_ADDR="${METRICS_ADDR:-127.0.0.1:9898}"
say "running $PIPELINE_FILE (Kafka $KAFKA_BROKERS); metrics on http://$METRICS_ADDR/metrics"
if [[ "$PIPELINE_FILE" == pipelines/btcusdt.yaml ]]; then
    say "results: cargo run --release -q -p connector-mongo --bin zscores -- latest   (Ctrl-C stops the pipeline)"
fi
status=0
target/release/pipeline run "$PIPELINE_FILE" --metrics-addr "$METRICS_ADDR" "${EXTRA[@]}" || status=$?
exit "$status"
