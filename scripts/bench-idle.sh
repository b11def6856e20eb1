#!/usr/bin/env bash
# Benchmark: CPU used while the input is idle. Runs the BTCUSDT pipeline's consuming
# stages (moving, zscore, load) with no source, so every consumer only waits, and reports
# the CPU of the pipeline process and of the broker over SECONDS, with the current fetch
# and linger settings, with a shorter fetch wait (5 ms) and with the previous ones
# (fetch.wait.max.ms 50, linger.ms 5). Binaries come from $CARGO_TARGET_DIR (default
# target).
#
# Usage: scripts/bench-idle.sh [SECONDS]   (default 20)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${PIPELINE_STATE_DIR:-$ROOT/.servers-bench}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
STARTED=0
WORK="$(mktemp -d)"
cleanup() {
    rm -rf "$WORK"
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
BROKER_PID="$(head -n 1 "$STATE/kafka.pid" 2>/dev/null || true)"
cargo build --release --quiet -p pipeline --bin pipeline
SECONDS_RUN="${1:-20}"

# measure LABEL PROPERTIES_YAML
measure() {
    local name="idle$$-$RANDOM"
    sed -e "s/^name: btcusdt/name: $name/" -e "s/btc-price/$name-btc-price/g" \
        -e "s/collection: \"$name-btc-price-zscore-{window}\"/collection: \"btc-price-zscore-{window}\"/" \
        pipelines/btcusdt.yaml >"$WORK/$name.yaml"
    if [[ -n "$2" ]]; then
        python3 - "$WORK/$name.yaml" "$2" <<'PY'
import sys
path, props = sys.argv[1], sys.argv[2]
text = open(path).read().replace("  partitions: 3\n", "  partitions: 3\n  properties: " + props + "\n", 1)
open(path, "w").write(text)
PY
    fi
    MONGO_DATABASE="$name" "$TARGET/release/pipeline" run "$WORK/$name.yaml" \
        --stage moving --stage zscore --stage load 2>/dev/null &
    local pid=$!
    sleep 10
    python3 - "$1" "$pid" "${BROKER_PID:-0}" "$SECONDS_RUN" <<'PY'
import os, sys, time
label, pid, broker, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def ticks(p):
    try:
        rest = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError, ValueError):
        return 0
hz = os.sysconf("SC_CLK_TCK")
a, b = ticks(pid), ticks(broker)
time.sleep(seconds)
a2, b2 = ticks(pid), ticks(broker)
load = " ".join(open("/proc/loadavg").read().split()[:3])
print(f"{label}: pipeline {100*(a2-a)/hz/seconds:.1f} % of a core, broker {100*(b2-b)/hz/seconds:.1f} % (3 idle consumers, {seconds:.0f} s, load {load})")
PY
    kill -TERM "$pid"
    wait "$pid" || true
}
measure "now (fetch.wait.max.ms 10, linger.ms 1)" ""
measure "shorter wait (fetch.wait.max.ms 5, linger.ms 1)" '{ fetch.wait.max.ms: "5" }'
measure "before (fetch.wait.max.ms 50, linger.ms 5)" '{ fetch.wait.max.ms: "50", linger.ms: "5" }'
