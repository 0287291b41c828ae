# shellcheck shell=bash disable=SC2034  # STARTED is read by e2e/stack
# PostgreSQL 15 clusters of the stack: one primary per region and a streaming
# replica of the us-east-1 primary, each on its own loopback port, data under
# $STACK_DIR/pg/<region>/{primary,replica}. Sourced by e2e/stack.

REGIONS=(us-east-1 eu-west-1 ap-southeast-1)
# Regions whose primary only accepts TLS (pg_hba `hostssl`), so that the TLS path of
# every client is exercised; the others stay plain TCP.
TLS_REGIONS=(eu-west-1)

# pg_tls REGION: true if REGION's primary runs with TLS only.
pg_tls() { [[ " ${TLS_REGIONS[*]} " == *" $1 "* ]]; }

# pg_pki_dir: the CA and server certificate of the TLS clusters.
pg_pki_dir() { printf '%s/pki/postgres' "$STACK_DIR"; }

# as_pg CMD...: run CMD as the database owner. initdb refuses root, so root
# runs it as the `postgres` system user; anyone else runs it as themselves.
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# pg_own PATH...: hand paths to the database owner (no-op when not root).
pg_own() { [[ $EUID -ne 0 ]] || chown postgres:postgres "$@"; }

# pg_traversable: the postgres user must be able to reach $STACK_DIR/pg, so
# every parent directory needs the search (x) bit for it.
pg_traversable() {
  [[ $EUID -eq 0 ]] || return 0
  local d=$STACK_DIR
  while [[ "$d" != / ]]; do
    if ! runuser -u postgres -- test -x "$d"; then
      log "chmod o+x $d (postgres must traverse it)"
      chmod o+x "$d"
    fi
    d=$(dirname "$d")
  done
}

pg_dir() { printf '%s/pg/%s/%s' "$STACK_DIR" "$1" "$2"; }      # region role
pg_log() { printf '%s/logs/pg-%s-%s.log' "$STACK_DIR" "$1" "$2"; }

pg_is_running() { as_pg "$PG_BIN/pg_ctl" status -D "$(pg_dir "$1" "$2")" >/dev/null 2>&1; }

# pg_start REGION ROLE: pg_ctl start -w, detached into its own session.
pg_start() {
  local dir logf
  dir=$(pg_dir "$1" "$2")
  logf=$(pg_log "$1" "$2")
  touch "$logf" && pg_own "$logf"
  # Own session (outlives the caller); fd 9, the stack lock, is not inherited.
  if ! as_pg setsid -w "$PG_BIN/pg_ctl" start -w -t 60 -D "$dir" -l "$logf" >/dev/null 9>&-; then
    tail_log "$logf"; die "PostgreSQL $1 $2 did not start"
  fi
  STARTED=1
}

# psql_admin PORT SQL: run SQL as superuser postgres over TCP.
psql_admin() {
  PGPASSWORD=$(secret pg-password) "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$1" -U postgres -d "${3:-postgres}" -c "$2"
}

# make_pg_pki: a CA and a server certificate for 127.0.0.1/localhost, made once per
# stack. The key is the postgres user's, mode 0600 (PostgreSQL refuses a looser one).
make_pg_pki() {
  local d
  d=$(pg_pki_dir)
  [[ -s "$d/server.crt" && -s "$d/server.key" && -s "$d/ca.crt" ]] && return 0
  log "generating the PostgreSQL CA and server certificate in $d"
  mkdir -p "$d"
  # The postgres user must reach $d through pki/ (mode 700, it holds the kube keys
  # and token): search only, and for the postgres group only, never for others.
  if [[ $EUID -eq 0 ]]; then
    chgrp postgres "$STACK_DIR/pki"
    chmod 710 "$STACK_DIR/pki"
  fi
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj '/CN=phoenix-e2e-postgres-ca' \
    -addext 'basicConstraints=critical,CA:TRUE' \
    -addext 'keyUsage=critical,keyCertSign,cRLSign' \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=localhost' \
    -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf '%s\n' 'basicConstraints = CA:FALSE' \
    'keyUsage = critical, digitalSignature, keyEncipherment' \
    'extendedKeyUsage = serverAuth' \
    'subjectAltName = IP:127.0.0.1, DNS:localhost' >"$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 \
    -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  rm -f "$d/server.csr" "$d/server.ext"
  chmod 600 "$d/ca.key" "$d/server.key"
  chmod 644 "$d/ca.crt" "$d/server.crt"
  chmod 755 "$d"
  pg_own "$d/server.key" "$d/server.crt" "$d/ca.crt"
}

# pg_hba_conf REGION: the host-based authentication of REGION's primary; a TLS region
# accepts TCP only over TLS (`hostssl`), so a plain connection is refused.
pg_hba_conf() {
  local host=host
  pg_tls "$1" && host=hostssl
  printf '%s\n' '# TYPE  DATABASE     USER  ADDRESS        METHOD' \
    'local   all          all                  scram-sha-256' \
    "$host    all          all   127.0.0.1/32   scram-sha-256" \
    "$host    replication  all   127.0.0.1/32   scram-sha-256"
}

# ensure_pg_tls REGION: TLS on for a TLS region's primary. Also upgrades a cluster made
# by an older stack without TLS (settings appended, pg_hba rewritten, restart).
ensure_pg_tls() {
  local region=$1 dir d
  pg_tls "$region" || return 0
  dir=$(pg_dir "$region" primary)
  d=$(pg_pki_dir)
  make_pg_pki
  as_pg grep -qx '# --- e2e/stack tls ---' "$dir/postgresql.conf" && return 0
  log "enabling TLS (hostssl only) on PostgreSQL $region primary"
  printf '%s\n' '' '# --- e2e/stack tls ---' 'ssl = on' \
    "ssl_cert_file = '$d/server.crt'" "ssl_key_file = '$d/server.key'" \
    "ssl_ca_file = '$d/ca.crt'" | as_pg tee -a "$dir/postgresql.conf" >/dev/null
  pg_hba_conf "$region" | as_pg tee "$dir/pg_hba.conf" >/dev/null
  if pg_is_running "$region" primary; then
    log "restarting PostgreSQL $region primary for TLS"
    as_pg "$PG_BIN/pg_ctl" stop -m fast -w -t 60 -D "$dir" >/dev/null ||
      die "could not stop PostgreSQL $region primary to enable TLS"
  fi
}

ensure_primary() {
  local region=$1 dir port pwfile
  dir=$(pg_dir "$region" primary)
  port=$(port_for "pg-$region-primary")
  if [[ ! -f "$dir/PG_VERSION" ]]; then
    log "initdb $region primary (port $port)"
    rm -rf "$dir"
    mkdir -p "$dir"
    pwfile="$STACK_DIR/pg/$region/.pw"
    secret pg-password >"$pwfile"
    pg_own "$STACK_DIR/pg/$region" "$dir" "$pwfile"
    chmod 700 "$dir"
    as_pg "$PG_BIN/initdb" -D "$dir" -U postgres --pwfile "$pwfile" \
      --auth-local scram-sha-256 --auth-host scram-sha-256 \
      --encoding UTF8 --no-locale --no-sync >/dev/null
    rm -f "$pwfile"
    # Last setting wins: appended lines override the defaults above them.
    as_pg tee -a "$dir/postgresql.conf" >/dev/null <<EOF

# --- e2e/stack ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$STACK_DIR/pg/run'
wal_level = replica
max_wal_senders = 10
wal_keep_size = '1GB'
hot_standby = on
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    pg_hba_conf "$region" | as_pg tee "$dir/pg_hba.conf" >/dev/null
  fi
  ensure_pg_tls "$region"
  if pg_is_running "$region" primary; then
    log "PostgreSQL $region primary already running (port $port)"
  else
    log "starting PostgreSQL $region primary on 127.0.0.1:$port"
    pg_start "$region" primary
  fi
  [[ "$(psql_admin "$port" "select 1 from pg_database where datname = 'phoenix'")" == 1 ]] ||
    psql_admin "$port" 'create database phoenix' >/dev/null
  # DDL is logged, so that tests can show no password ever travels in clear text
  # (the operator sends SCRAM verifiers); idempotent, also for clusters made earlier.
  if [[ "$(psql_admin "$port" 'show log_statement')" != ddl ]]; then
    psql_admin "$port" "alter system set log_statement = 'ddl'" >/dev/null
    psql_admin "$port" 'select pg_reload_conf()' >/dev/null
  fi
}

# ensure_replica REGION: streaming replica of REGION's primary (basebackup -R).
ensure_replica() {
  local region=$1 dir port pport
  dir=$(pg_dir "$region" replica)
  port=$(port_for "pg-$region-replica")
  pport=$(port_for "pg-$region-primary")
  if [[ ! -f "$dir/standby.signal" ]]; then
    log "pg_basebackup $region replica from port $pport (port $port)"
    rm -rf "$dir"
    # -R writes standby.signal and primary_conninfo (with the password).
    as_pg env PGPASSWORD="$(secret pg-password)" "$PG_BIN/pg_basebackup" \
      -h 127.0.0.1 -p "$pport" -U postgres -D "$dir" -R -X stream -c fast --no-sync
    printf '\n# --- e2e/stack replica ---\nport = %s\nhot_standby = on\n' "$port" |
      as_pg tee -a "$dir/postgresql.conf" >/dev/null
  fi
  if pg_is_running "$region" replica; then
    log "PostgreSQL $region replica already running (port $port)"
  else
    log "starting PostgreSQL $region replica on 127.0.0.1:$port"
    pg_start "$region" replica
  fi
  [[ "$(psql_admin "$port" 'select pg_is_in_recovery()')" == t ]] ||
    die "PostgreSQL $region replica is not in recovery"
}

start_postgres() {
  mkdir -p "$STACK_DIR/pg/run"
  pg_own "$STACK_DIR/pg" "$STACK_DIR/pg/run"
  pg_traversable
  local r
  for r in "${REGIONS[@]}"; do
    mkdir -p "$STACK_DIR/pg/$r"
    pg_own "$STACK_DIR/pg/$r"
    ensure_primary "$r"
  done
  ensure_replica us-east-1
}

stop_postgres() {
  local r role dir
  for r in "${REGIONS[@]}"; do
    for role in replica primary; do
      dir=$(pg_dir "$r" "$role")
      [[ -f "$dir/PG_VERSION" ]] || continue
      if pg_is_running "$r" "$role"; then
        log "stopping PostgreSQL $r $role"
        as_pg "$PG_BIN/pg_ctl" stop -m fast -w -t 60 -D "$dir" >/dev/null ||
          as_pg "$PG_BIN/pg_ctl" stop -m immediate -w -D "$dir" >/dev/null ||
          log "could not stop PostgreSQL $r $role"
      fi
    done
  done
}

# pg_status: one line per cluster; fails if one of them is stopped.
pg_status() {
  local r role rc=0
  for r in "${REGIONS[@]}"; do
    for role in primary replica; do
      [[ -d "$(pg_dir "$r" "$role")" ]] || continue
      if pg_is_running "$r" "$role"; then
        printf '  %-32s running  127.0.0.1:%s\n' "postgres $r $role" "$(port_for "pg-$r-$role")"
      else
        printf '  %-32s stopped\n' "postgres $r $role"; rc=1
      fi
    done
  done
  return "$rc"
}
