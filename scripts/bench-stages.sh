#!/usr/bin/env bash
# Benchmark: the moving-statistics and z-score stages through Kafka (release build).
#
# Usage: scripts/bench-stages.sh [PRICES]   (default 1000000 prices, one symbol, 10/s)
# Uses KAFKA_BROKERS when set; otherwise starts a broker of its own on port 29392.
#
# Replays PRICES price records into a topic, then runs each stage alone until its
# bounded input ends, and prints events/s and peak RSS. The time includes the consumer
# group join (about 3 s on Tansu), which is also reported subtracted.
set -euo pipefail
PRICES="${1:-1000000}"
# shellcheck source=scripts/bench-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"

python3 - "$PRICES" > "$WORK/prices.jsonl" <<'PY'
import sys, random, time
n = int(sys.argv[1]); rnd = random.Random(7); cents = 9_700_000
base = 1746631800000
for i in range(n):
    if rnd.random() < 0.1:
        cents += rnd.choice((-2, -1, 1, 2))
    ms = base + i * 100
    s, m = divmod(ms, 1000)
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%03dZ" % m
    sys.stdout.write('{"symbol":"BTCUSDT","price":%d.%02d,"timestamp":"%s"}\n' % (cents // 100, cents % 100, t))
PY

ID="bench-$$-$(date +%s)"
cat > "$WORK/pipeline.yaml" <<YAML
name: $ID
kafka:
  brokers: \${KAFKA_BROKERS}
stages:
  - name: replay
    type: file_source
    output: $ID-prices
    config: { path: "$WORK/prices.jsonl", key_field: symbol, timestamp_field: timestamp }
  - name: moving
    type: moving_stats
    input: $ID-prices
    output: $ID-moving
    config: { windows: [30s, 1m, 5m, 15m, 30m, 1h], slide: 1s, lateness: 10s }
  - name: zscore
    type: zscore
    inputs: { prices: $ID-prices, stats: $ID-moving }
    output: $ID-zscore
    config: { slide: 1s, lateness: 10s }
YAML

report() { # name seconds rss_kib events joins_group(0|1)
    python3 -c "
t=$2; n=$4; net=max(t-3*$5,0.001)
extra = f'({n/net:>10,.0f}/s without the ~3 s group join)' if $5 else ' ' * 47
print(f'  {\"$1\":<26} {t:7.2f} s  {n/t:>10,.0f} events/s  {extra}  peak RSS {$3//1024} MiB')"
}
read -r T_REPLAY RSS_REPLAY < <(measure "$WORK/pipeline.yaml" --stage replay)
read -r T_MOVING RSS_MOVING < <(measure "$WORK/pipeline.yaml" --stage moving)
read -r T_ZSCORE RSS_ZSCORE < <(measure "$WORK/pipeline.yaml" --stage zscore)
echo "stages through Kafka, $PRICES prices (1 symbol, 10/s of event time), broker $KAFKA_BROKERS, release build"
report "replay (file_source)" "$T_REPLAY" "$RSS_REPLAY" "$PRICES" 0
report "moving_stats (6 windows)" "$T_MOVING" "$RSS_MOVING" "$PRICES" 1
report "zscore (prices + stats)" "$T_ZSCORE" "$RSS_ZSCORE" "$PRICES" 1
