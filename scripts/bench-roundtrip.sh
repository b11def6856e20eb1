#!/usr/bin/env bash
# Benchmark: records/s of file -> Kafka -> file through `pipeline run` (release build)
# against the local broker.
#
# Usage: scripts/bench-roundtrip.sh [RECORDS]   (default 1000000)
# Uses KAFKA_BROKERS when set; otherwise starts a broker of its own on port 29392
# (state in .servers-bench) and stops it afterwards.
#
# Prints, for the producing half (file_source -> topic), the consuming half
# (topic -> file_sink) and the whole pipeline in one process: records/s and peak RSS.
# The consuming half includes the broker's consumer-group join (about 3 s on Tansu), so
# it is also reported without that fixed cost.
set -euo pipefail
RECORDS="${1:-1000000}"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

python3 - "$RECORDS" > "$WORK/in.jsonl" <<'PY'
import sys, random
n = int(sys.argv[1]); rnd = random.Random(7); price = 97000.0
symbols = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
out = sys.stdout
base = 1746631800000
for i in range(n):
    price += rnd.choice((-0.01, 0.0, 0.0, 0.01))
    ms = base + i * 100
    s, m = divmod(ms, 1000)
    import time
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % m
    out.write('{"symbol":"%s","price":%.2f,"timestamp":"%s"}\n' % (symbols[i % 3], price, t))
PY

TOPIC="bench-$$-$(date +%s)"
cat > "$WORK/pipeline.yaml" <<YAML
name: bench-$TOPIC
kafka:
  brokers: \${KAFKA_BROKERS}
topics:
  $TOPIC:
    partitions: 3
stages:
  - name: read
    type: file_source
    output: $TOPIC
    config: { path: "$WORK/in.jsonl", key_field: symbol, timestamp_field: timestamp }
  - name: write
    type: file_sink
    input: $TOPIC
    batch: { max_records: 10000, max_wait: 50ms }
    config: { path: "$WORK/out.jsonl", fsync: false }
YAML

rate() { python3 -c "print(f'{$RECORDS / $1:,.0f}')"; }

read -r T_PRODUCE RSS_PRODUCE < <(measure "$WORK/pipeline.yaml" --stage read)
read -r T_CONSUME RSS_CONSUME < <(measure "$WORK/pipeline.yaml" --stage write)
LINES=$(wc -l < "$WORK/out.jsonl")
[[ "$LINES" == "$RECORDS" ]] || { echo "expected $RECORDS records out, got $LINES" >&2; exit 1; }
rm -f "$WORK/out.jsonl"
sed -i "s/name: bench-$TOPIC/name: bench2-$TOPIC/; s/$TOPIC/$TOPIC-2/g" "$WORK/pipeline.yaml"
read -r T_ALL RSS_ALL < <(measure "$WORK/pipeline.yaml")
LINES=$(wc -l < "$WORK/out.jsonl")
[[ "$LINES" == "$RECORDS" ]] || { echo "expected $RECORDS records out, got $LINES" >&2; exit 1; }
JOIN_S=3
T_CONSUME_NET=$(python3 -c "print(max($T_CONSUME - $JOIN_S, 0.001))")

echo "file -> Kafka -> file, $RECORDS records of ~75 bytes, broker $KAFKA_BROKERS (release build)"
printf '  %-34s %8.2f s  %12s records/s  peak RSS %6d MiB\n' "produce (file_source -> topic)" "$T_PRODUCE" "$(rate "$T_PRODUCE")" $((RSS_PRODUCE / 1024))
printf '  %-34s %8.2f s  %12s records/s  peak RSS %6d MiB\n' "consume (topic -> file_sink)" "$T_CONSUME" "$(rate "$T_CONSUME")" $((RSS_CONSUME / 1024))
printf '  %-34s %8.2f s  %12s records/s\n' "consume without the ~3 s group join" "$T_CONSUME_NET" "$(rate "$T_CONSUME_NET")"
printf '  %-34s %8.2f s  %12s records/s  peak RSS %6d MiB\n' "whole pipeline, one process" "$T_ALL" "$(rate "$T_ALL")" $((RSS_ALL / 1024))
