#!/usr/bin/env bash
# Benchmark: end-to-end latency (price receipt -> z-score readable in MongoDB) and peak
# RSS of the whole BTCUSDT pipeline, against the Binance mock (release build).
#
# Usage: scripts/bench-e2e.sh [SECONDS]   (default 60)
# Uses KAFKA_BROKERS and MONGO_URI when both are set; otherwise starts local servers on
# ports 29392 / 47392 (state in .servers-bench) and stops them afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STARTED=0
cleanup() {
    if [[ "$STARTED" == 1 ]]; then
        KAFKA_PORT=29392 MONGO_PORT=47392 PIPELINE_STATE_DIR="$ROOT/.servers-bench" scripts/servers.sh stop >/dev/null || true
    fi
}
trap cleanup EXIT
if [[ -z "${KAFKA_BROKERS:-}" || -z "${MONGO_URI:-}" ]]; then
    scripts/servers.sh install >/dev/null
    KAFKA_PORT=29392 MONGO_PORT=47392 PIPELINE_STATE_DIR="$ROOT/.servers-bench" scripts/servers.sh start >/dev/null
    STARTED=1
    export KAFKA_BROKERS=127.0.0.1:29392
    export MONGO_URI="mongodb://127.0.0.1:47392/?directConnection=true"
fi
cargo build --release --quiet -p pipeline --bin pipeline --example e2e_latency
target/release/examples/e2e_latency "${1:-60}"
