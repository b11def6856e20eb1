#!/usr/bin/env bash
# Benchmark: end-to-end latency (the moment a z-score may exist -> readable in MongoDB)
# split into hops, CPU per stage, peak RSS, completeness, and MongoDB write rates, of the
# BTCUSDT pipeline against the Binance mock (release build).
#
# Usage: scripts/bench-e2e.sh [SECONDS] [SYMBOLS...]   (default 60 s; 1 and 100 symbols)
# Each symbol count runs twice: all stages in one process, then one stage per process.
# Uses KAFKA_BROKERS and MONGO_URI when both are set; otherwise starts local servers on
# BENCH_KAFKA_PORT / BENCH_MONGO_PORT, or else on the first free ports from 29392 / 47392
# (never the development, test or other worktrees' usual ports), with state in
# $PIPELINE_STATE_DIR (default .servers-bench), and stops them afterwards.
# Binaries come from $CARGO_TARGET_DIR (default target).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STARTED=0
STATE="${PIPELINE_STATE_DIR:-$ROOT/.servers-bench}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
# Ports other setups use by default: development, tests, other engineers' servers.
RESERVED=" 9092 19092 27017 37017 29092 29192 29292 47117 47217 "

in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# free_port FIRST: the first port from FIRST on that is neither reserved nor in use.
free_port() {
    local port="$1"
    while [[ "$RESERVED" == *" $port "* ]] || in_use "$port"; do
        port=$((port + 1))
    done
    echo "$port"
}

cleanup() {
    if [[ "$STARTED" == 1 ]]; then
        KAFKA_PORT="$KAFKA_PORT" MONGO_PORT="$MONGO_PORT" PIPELINE_STATE_DIR="$STATE" \
            scripts/servers.sh stop >/dev/null || true
    fi
}
trap cleanup EXIT
if [[ -z "${KAFKA_BROKERS:-}" || -z "${MONGO_URI:-}" ]]; then
    KAFKA_PORT="${BENCH_KAFKA_PORT:-$(free_port 29392)}"
    MONGO_PORT="${BENCH_MONGO_PORT:-$(free_port 47392)}"
    scripts/servers.sh install >/dev/null
    STARTED=1
    KAFKA_PORT="$KAFKA_PORT" MONGO_PORT="$MONGO_PORT" PIPELINE_STATE_DIR="$STATE" \
        scripts/servers.sh start >/dev/null
    export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
    export MONGO_URI="mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true"
    echo "servers: Kafka $KAFKA_BROKERS, MongoDB $MONGO_URI (state in $STATE)"
fi
# CPU of the servers is reported when their pid files are found.
BENCH_BROKER_PID="$(head -n 1 "$STATE/kafka.pid" 2>/dev/null || true)"
BENCH_MONGO_PID="$(head -n 1 "$STATE/mongo.pid" 2>/dev/null || true)"
export BENCH_BROKER_PID BENCH_MONGO_PID
cargo build --release --quiet -p pipeline --bin pipeline --example e2e_latency
export PIPELINE_BIN="${PIPELINE_BIN:-$TARGET/release/pipeline}"
SECONDS_RUN="${1:-60}"
shift || true
COUNTS=("$@")
[[ ${#COUNTS[@]} -gt 0 ]] || COUNTS=(1 100)
for n in "${COUNTS[@]}"; do
    for mode in one split; do
        "$TARGET/release/examples/e2e_latency" "$SECONDS_RUN" "$n" "$mode"
        echo
    done
done
