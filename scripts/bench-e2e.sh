#!/usr/bin/env bash
# Benchmark: end-to-end latency (the moment a z-score may exist -> readable in MongoDB),
# CPU per stage, peak RSS, completeness, and MongoDB write rates, of the BTCUSDT pipeline
# against the Binance mock (release build).
#
# Usage: scripts/bench-e2e.sh [SECONDS] [SYMBOLS...]   (default 60 s; 1 and 100 symbols)
# Each symbol count runs twice: all stages in one process, then one stage per process.
# Uses KAFKA_BROKERS and MONGO_URI when both are set; otherwise starts local servers on
# ports 29392 / 47392 (state in .servers-bench) and stops them afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STARTED=0
STATE="${PIPELINE_STATE_DIR:-$ROOT/.servers-bench}"
cleanup() {
    if [[ "$STARTED" == 1 ]]; then
        KAFKA_PORT=29392 MONGO_PORT=47392 PIPELINE_STATE_DIR="$STATE" scripts/servers.sh stop >/dev/null || true
    fi
}
trap cleanup EXIT
if [[ -z "${KAFKA_BROKERS:-}" || -z "${MONGO_URI:-}" ]]; then
    scripts/servers.sh install >/dev/null
    KAFKA_PORT=29392 MONGO_PORT=47392 PIPELINE_STATE_DIR="$STATE" scripts/servers.sh start >/dev/null
    STARTED=1
    export KAFKA_BROKERS=127.0.0.1:29392
    export MONGO_URI="mongodb://127.0.0.1:47392/?directConnection=true"
fi
# CPU of the servers is reported when their pid files are found.
BENCH_BROKER_PID="$(head -n 1 "$STATE/kafka.pid" 2>/dev/null || true)"
BENCH_MONGO_PID="$(head -n 1 "$STATE/mongo.pid" 2>/dev/null || true)"
export BENCH_BROKER_PID BENCH_MONGO_PID
cargo build --release --quiet -p pipeline --bin pipeline --example e2e_latency
SECONDS_RUN="${1:-60}"
shift || true
COUNTS=("$@")
[[ ${#COUNTS[@]} -gt 0 ]] || COUNTS=(1 100)
for n in "${COUNTS[@]}"; do
    for mode in one split; do
        target/release/examples/e2e_latency "$SECONDS_RUN" "$n" "$mode"
        echo
    done
done
