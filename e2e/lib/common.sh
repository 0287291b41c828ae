# shellcheck shell=bash
# Helpers shared by e2e/stack: logging, persisted state, free ports, background
# processes with pid files, and installing what a fresh Debian 12 lacks.
# Sourced, never run. Expects STACK_DIR to be set by the caller.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/phoenix-guardian"
VENV="$CACHE_DIR/venv"
MOTO_VERSION=5.2.5

log() { printf '[stack %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- persisted state: one small file per key under $STACK_DIR/state ---------
# Ports, passwords and tokens survive between `up` runs, so that a component
# restarted by a later `up` comes back on the same address with the same
# credentials and the env file stays valid.
state_get() { cat "$STACK_DIR/state/$1" 2>/dev/null; }
state_set() { ( umask 077; printf '%s' "$2" >"$STACK_DIR/state/$1" ); }

# secret KEY: a random hex string (safe in URLs and DSNs), created once.
secret() {
  [[ -s "$STACK_DIR/state/$1" ]] || state_set "$1" "$(openssl rand -hex 16)"
  state_get "$1"
}

# port_for NAME: a free TCP port on 127.0.0.1, chosen once and remembered as
# state/port-NAME. Never hands out a port another component already holds.
port_for() {
  local key="port-$1" p
  p=$(state_get "$key") || true
  if [[ -z "$p" ]]; then
    # shellcheck disable=SC2046  # one argument per remembered port
    p=$(python3 -c 'import socket, sys
taken = set(sys.argv[1:])
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if str(p) not in taken: print(p); break' $(cat "$STACK_DIR"/state/port-* 2>/dev/null))
    state_set "$key" "$p"
  fi
  printf '%s' "$p"
}

# --- background processes ---------------------------------------------------
pidfile() { printf '%s/pids/%s.pid' "$STACK_DIR" "$1"; }

# alive PID: the process exists and is not a zombie (an exited child that
# its parent has not reaped yet still answers kill -0).
alive() {
  [[ "$1" =~ ^[0-9]+$ ]] && kill -0 "$1" 2>/dev/null &&
    [[ "$(ps -o stat= -p "$1" 2>/dev/null)" != Z* ]]
}

# running NAME: true if pids/NAME.pid names a live process.
running() {
  local pid
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
  alive "$pid"
}

# spawn NAME CMD...: start CMD detached (own session, so that it outlives the
# shell or CI step that ran `up`), output to logs/NAME.log, pid to pids/NAME.pid.
# fd 9 (the stack lock, see e2e/stack) is closed so the daemon never holds it.
spawn() {
  local name=$1; shift
  setsid "$@" >>"$STACK_DIR/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$name")"
}

# tail_log FILE: the end of a log, for error messages.
tail_log() { log "--- last lines of $1 ---"; tail -n 40 "$1" >&2 || true; }

# wait_for NAME TIMEOUT LOG CMD...: poll CMD every 0.5 s until it succeeds;
# on timeout (or when pids/NAME.pid dies) print the log tail and fail.
wait_for() {
  local name=$1 timeout=$2 logf=$3; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [[ -f "$(pidfile "$name")" ]] && ! running "$name"; then
      tail_log "$logf"; die "$name exited during start-up"
    fi
    if (( SECONDS >= deadline )); then
      tail_log "$logf"; die "$name not ready after ${timeout}s"
    fi
    sleep 0.5
  done
}

# stop_pids NAME...: TERM the processes of pids/NAME.pid (all at once), KILL
# what still runs after 15 s, remove the pid files. A process that leads its
# own process group (all that spawn starts) is stopped with its group, so
# that children (e.g. of `cargo run`) go too.
stop_pids() {
  local name pid i targets=() pids=() left mygroup
  mygroup=$(ps -o pgid= -p $$ | tr -d ' ')
  for name in "$@"; do
    pid=$(cat "$(pidfile "$name")" 2>/dev/null) || continue
    rm -f "$(pidfile "$name")"
    alive "$pid" || continue
    log "stopping $name (pid $pid)"
    pids+=("$pid")
    # (never our own group: `down` must not signal itself)
    if [[ "$(ps -o pgid= -p "$pid" | tr -d ' ')" == "$pid" && "$pid" != "$mygroup" ]]; then
      targets+=("-$pid")
    else
      targets+=("$pid")
    fi
  done
  (( ${#pids[@]} )) || return 0
  kill -TERM -- "${targets[@]}" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do
    left=0
    for pid in "${pids[@]}"; do
      if alive "$pid"; then left=1; fi
    done
    (( left )) || return 0
    sleep 0.5
  done
  log "still running after TERM, sending KILL: ${pids[*]}"
  kill -KILL -- "${targets[@]}" 2>/dev/null || true
}

# --- installing what is missing ------------------------------------------------
APT_UPDATED=0
apt_install() {
  [[ $EUID -eq 0 ]] || die "need root to apt-get install $*"
  if (( !APT_UPDATED )); then
    log "apt-get update"
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold "$@" >/dev/null
}

ensure_packages() {
  command -v python3 >/dev/null || die "python3 is required"
  command -v openssl >/dev/null || apt_install openssl
  command -v curl >/dev/null || apt_install curl ca-certificates
  command -v runuser >/dev/null || apt_install util-linux   # runuser, setsid, flock
  command -v ps >/dev/null || apt_install procps            # ps, pgrep
  # The browser login test drives headless Chromium through chromedriver (W3C WebDriver).
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt_install chromium chromium-driver
  fi
  if [[ ! -x "$PG_BIN/initdb" || ! -x "$PG_BIN/pg_basebackup" || ! -x "$PG_BIN/psql" ]]; then
    # Keep the package from creating and starting its own cluster on 5432.
    mkdir -p /etc/postgresql-common
    [[ -f /etc/postgresql-common/createcluster.conf ]] ||
      echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
    apt_install postgresql-15 postgresql-client-15
  fi
  # initdb refuses to run as root: run PostgreSQL as the `postgres` user.
  if [[ $EUID -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    log "creating system user postgres"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
}

# ensure_moto: moto server in a venv of its own, installed once per machine.
ensure_moto() {
  if [[ -x "$VENV/bin/moto_server" && -f "$VENV/.moto-$MOTO_VERSION" ]]; then
    return 0
  fi
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  log "installing moto[server]==$MOTO_VERSION into $VENV"
  mkdir -p "$CACHE_DIR"
  [[ -x "$VENV/bin/pip" ]] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  touch "$VENV/.moto-$MOTO_VERSION"
}
