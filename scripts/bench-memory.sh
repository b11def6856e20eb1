#!/usr/bin/env bash
# Benchmark: peak memory (RSS) against the number of keys and the input size (issue 15).
#
# Usage: scripts/bench-memory.sh [quick]
# Uses KAFKA_BROKERS when set; otherwise starts a broker of its own on port 29392.
#
# 1. Each transform stage alone, in process through the `Transform` trait the way the
#    runtime drives it (examples/bench_memory.rs): 1, 1k, 10k, 100k keys with one price
#    per key (moving_stats: windows 30s and 1h, slide 1s, so end of input closes 3,600
#    windows per key; zscore: one price and one statistics record per key), the issue's
#    20,000-key replay, 100 keys x 24 h of 10 Hz prices (the six BTCUSDT windows), and
#    the old behaviour (every output of a call held at once) for comparison.
# 2. The whole pipeline through Kafka (file_source -> moving_stats -> zscore -> file_sink
#    in one process): the local Tansu broker keeps topics in memory, so the output of
#    10k+ keys (36 M records, ~9 GB) does not fit; it runs 1, 100 and 1,000 keys.
# `quick` skips the 100k-key and 24 h runs (about a minute in all instead of ~6).
# `pipeline` runs only part 2. PIPELINE_KEYS="1 100 1000" chooses its key counts;
# KAFKA_PROPERTIES='{queue.buffering.max.kbytes: 8192}' adds client properties to it;
# PIPELINE_WINDOWS='[30s, 5m]' sets moving_stats' windows (300 records per key instead
# of 3,600, so 10k keys fit the in-memory broker and ~2 minutes);
# WITHOUT_ZSCORE=1 leaves the zscore stage out; PIPELINE_BIN=path runs that build of
# `pipeline` instead of building this tree's (to compare before and after a change).
set -euo pipefail
QUICK="${1:-}"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

if [[ "$QUICK" != pipeline ]]; then
cargo build --release --quiet --example bench_memory
EX="$ROOT/target/release/examples/bench_memory"
echo "== each transform stage alone (in process, emitter of 1,024 records)"
KEYS=(1 1000 10000 20000)
[[ "$QUICK" == quick ]] || KEYS+=(100000)
for k in "${KEYS[@]}"; do "$EX" moving keys "$k"; done
"$EX" moving keys 1000 unbounded
for k in 1 1000 10000; do "$EX" zscore keys "$k"; done
if [[ "$QUICK" == quick ]]; then
    "$EX" moving ticks 100 1
    "$EX" zscore ticks 100 1
else
    "$EX" zscore keys 100000
    "$EX" moving ticks 100 24
    "$EX" zscore ticks 100 24
fi

fi

echo "== the whole pipeline through Kafka ($KAFKA_BROKERS), one price per key, windows ${PIPELINE_WINDOWS:-[30s, 1h]}${KAFKA_PROPERTIES:+, properties $KAFKA_PROPERTIES}"
read -r -a PIPELINE_KEY_COUNTS <<< "${PIPELINE_KEYS:-1 100 1000}"
for k in "${PIPELINE_KEY_COUNTS[@]}"; do
    python3 - "$k" > "$WORK/prices-$k.jsonl" <<'PY'
import sys, time
n = int(sys.argv[1]); base = 1746631830250
for i in range(n):
    ms = base + 3 * i
    s, m = divmod(ms, 1000)
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % m
    sys.stdout.write('{"symbol":"S%06d","price":%d.25,"timestamp":"%s"}\n' % (i, 100 + i % 1000, t))
PY
    ID="bench-mem-$$-$k-$(date +%s)"
    ZSCORE_STAGE=""
    [[ -n "${WITHOUT_ZSCORE:-}" ]] || ZSCORE_STAGE="  - name: zscore
    type: zscore
    inputs: { prices: $ID-prices, stats: $ID-moving }
    output: $ID-zscore
    dead_letter: $ID-unmatched
    config: { slide: 1s, lateness: 10s }
"
    cat > "$WORK/pipeline-$k.yaml" <<YAML
name: $ID
kafka:
  brokers: \${KAFKA_BROKERS}
  properties: ${KAFKA_PROPERTIES:-{\}}
stages:
  - name: replay
    type: file_source
    output: $ID-prices
    config: { path: "$WORK/prices-$k.jsonl", key_field: symbol, timestamp_field: timestamp }
  - name: moving
    type: moving_stats
    input: $ID-prices
    output: $ID-moving
    config: { windows: ${PIPELINE_WINDOWS:-[30s, 1h]}, slide: 1s, lateness: 10s }
$ZSCORE_STAGE  - name: archive
    type: file_sink
    input: $ID-moving
    batch: { max_records: 5000, max_wait: 20ms }
    config: { path: "$WORK/moving-$k.jsonl", fsync: false }
YAML
    read -r SECS RSS < <(measure "$WORK/pipeline-$k.yaml")
    LINES=$(wc -l < "$WORK/moving-$k.jsonl")
    printf '  keys=%-6s moving records written %9s  %7.1f s  peak RSS %4d MiB\n' \
        "$k" "$LINES" "$SECS" "$((RSS / 1024))"
    rm -f "$WORK/moving-$k.jsonl"
done
