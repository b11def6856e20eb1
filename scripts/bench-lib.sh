# shellcheck shell=bash
# Shared by the benchmark scripts (source it): a work folder, a broker, and `measure`.
#
# After sourcing: ROOT (repository), WORK (temporary folder, removed on exit),
# KAFKA_BROKERS (the caller's, or a broker started on port 29392 and stopped on exit),
# BIN (the release `pipeline` binary, built; or $PIPELINE_BIN when set).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
WORK="$(mktemp -d)"
STARTED_BROKER=0
bench_cleanup() {
    rm -rf "$WORK"
    if [[ "$STARTED_BROKER" == 1 ]]; then
        KAFKA_PORT=29392 PIPELINE_STATE_DIR="$ROOT/.servers-bench" scripts/servers.sh stop-kafka >/dev/null || true
    fi
}
trap bench_cleanup EXIT
if [[ -z "${KAFKA_BROKERS:-}" ]]; then
    scripts/servers.sh install >/dev/null
    KAFKA_PORT=29392 PIPELINE_STATE_DIR="$ROOT/.servers-bench" scripts/servers.sh start-kafka >/dev/null
    STARTED_BROKER=1
    export KAFKA_BROKERS=127.0.0.1:29392
fi
# PIPELINE_BIN runs another build of `pipeline` (e.g. a copy of main's, to compare).
if [[ -n "${PIPELINE_BIN:-}" ]]; then
    BIN="$PIPELINE_BIN"
else
    cargo build --release --quiet -p pipeline --bin pipeline
    BIN="$ROOT/target/release/pipeline"
fi

# measure PIPELINE_FILE [run arguments...]: runs `pipeline run`, prints "seconds peak_rss_kib".
measure() {
    python3 - "$BIN" "$@" <<'PY'
import resource, subprocess, sys, time
t0 = time.monotonic()
rc = subprocess.call([sys.argv[1], "run"] + sys.argv[2:], stderr=subprocess.DEVNULL)
if rc != 0:
    sys.exit("pipeline failed with %d" % rc)
print("%.3f %d" % (time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
PY
}
