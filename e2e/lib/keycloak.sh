# shellcheck shell=bash disable=SC2034  # STARTED is read by e2e/stack
# Keycloak of the stack: a real OIDC provider with one realm per example tenant, so
# that IdPConnections (and later the data plane's OIDC) are tested against it.
# Sourced by e2e/stack after lib/common.sh.
#
#   install   org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip from Maven
#             Central (the machine's mvn), unzipped once per machine under
#             $CACHE_DIR/keycloak/$KEYCLOAK_VERSION/dist and augmented there once
#             for start-dev (the slow part of a first start), under a lock so that
#             two stacks never install or augment at the same time
#   per stack a copy of that distribution in $STACK_DIR/keycloak/dist, so that each
#             stack has its own data/ (H2 database, tmp, transaction logs)
#   start     kc.sh start-dev on 127.0.0.1 (ports port-keycloak-http and
#             port-keycloak-management), admin from the stack's state
#   configure e2e/lib/keycloak_realms.py: realms, client, mappers, groups, users
#             (idempotent, through the admin REST API); readiness is the master
#             realm's discovery document (start-dev serves no /health by default)

KEYCLOAK_VERSION=26.7.3
KEYCLOAK_CACHE="$CACHE_DIR/keycloak/$KEYCLOAK_VERSION"
KEYCLOAK_ADMIN_USER=admin

# keycloak_java_home: Temurin 25 of the base image when present, else the default JDK.
keycloak_java_home() {
  local j
  for j in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/default-java; do
    if [[ -x "$j/bin/java" ]]; then printf '%s' "$j"; return 0; fi
  done
  command -v java >/dev/null || return 1
  dirname "$(dirname "$(readlink -f "$(command -v java)")")"
}

# keycloak_augment DIST: run start-dev once on throw-away ports and data until it
# listens, then stop it. Keycloak persists the dev build (lib/quarkus) in DIST, so
# every copy of DIST starts without the one-time augmentation.
keycloak_augment() {
  local dist=$1 http mgmt pid deadline logf
  logf="$KEYCLOAK_CACHE/augment.log"
  read -r http mgmt < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in ss))')
  log "augmenting Keycloak for start-dev once per machine (35-66 s; log: $logf)"
  (
    cd "$dist" &&
      JAVA_HOME=$(keycloak_java_home) KC_BOOTSTRAP_ADMIN_USERNAME=augment \
        KC_BOOTSTRAP_ADMIN_PASSWORD=augment \
        exec setsid bin/kc.sh start-dev --http-host=127.0.0.1 --http-port="$http" \
        --http-management-port="$mgmt" >"$logf" 2>&1 </dev/null 8>&- 9>&-
  ) &
  pid=$!
  deadline=$((SECONDS + 300))
  until curl -fsS -o /dev/null "http://127.0.0.1:$http/realms/master/.well-known/openid-configuration" 2>/dev/null; do
    if ! alive "$pid"; then tail_log "$logf"; die "Keycloak exited while augmenting"; fi
    if (( SECONDS >= deadline )); then
      kill -TERM -- "-$pid" 2>/dev/null || true
      tail_log "$logf"; die "Keycloak not ready after 300s while augmenting"
    fi
    sleep 1
  done
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The throw-away admin and H2 database must not reach the stacks' copies.
  rm -rf "$dist/data"
}

# ensure_keycloak: the augmented distribution in the machine cache (once), and this
# stack's own copy of it.
ensure_keycloak() {
  local dist="$KEYCLOAK_CACHE/dist" tmp t0=$SECONDS
  if [[ ! -f "$KEYCLOAK_CACHE/.ready" ]]; then
    mkdir -p "$KEYCLOAK_CACHE"
    # One install per machine at a time; fd 8 is closed for every daemon we start.
    exec 8>"$KEYCLOAK_CACHE/.lock"
    flock -w 900 8 || die "another stack has been installing Keycloak for 15 minutes"
    if [[ ! -f "$KEYCLOAK_CACHE/.ready" ]]; then
      command -v unzip >/dev/null || apt_install unzip
      command -v mvn >/dev/null || apt_install maven
      keycloak_java_home >/dev/null || apt_install openjdk-17-jdk-headless
      rm -rf "$dist" "$KEYCLOAK_CACHE"/tmp.*
      tmp=$(mktemp -d "$KEYCLOAK_CACHE/tmp.XXXXXX")
      log "downloading org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip (169 MiB) with mvn"
      mvn -q -B dependency:copy -Dartifact="org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
        -DoutputDirectory="$tmp" >"$KEYCLOAK_CACHE/mvn.log" 2>&1 ||
        { tail_log "$KEYCLOAK_CACHE/mvn.log"; die "mvn could not fetch Keycloak $KEYCLOAK_VERSION"; }
      unzip -q "$tmp/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip" -d "$tmp"
      mv "$tmp/keycloak-$KEYCLOAK_VERSION" "$dist"
      rm -rf "$tmp"
      log "Keycloak $KEYCLOAK_VERSION downloaded and unpacked in $((SECONDS - t0))s"
      keycloak_augment "$dist"
      touch "$KEYCLOAK_CACHE/.ready"
      log "Keycloak installed in $KEYCLOAK_CACHE in $((SECONDS - t0))s"
    fi
    exec 8>&-
  fi
  if [[ ! -x "$STACK_DIR/keycloak/dist/bin/kc.sh" ]]; then
    t0=$SECONDS
    rm -rf "$STACK_DIR/keycloak"
    mkdir -p "$STACK_DIR/keycloak"
    cp -a "$dist" "$STACK_DIR/keycloak/dist.tmp"
    mv "$STACK_DIR/keycloak/dist.tmp" "$STACK_DIR/keycloak/dist"
    log "copied Keycloak into $STACK_DIR/keycloak in $((SECONDS - t0))s"
  fi
}

keycloak_url() { printf 'http://127.0.0.1:%s' "$(port_for keycloak-http)"; }

# start_keycloak: spawn it if it is not running; wait_keycloak waits for it (the
# stack starts the other daemons in between, Keycloak takes 10-15 s to start).
KEYCLOAK_T0=
start_keycloak() {
  local http mgmt
  http=$(port_for keycloak-http)
  mgmt=$(port_for keycloak-management)
  if running keycloak; then
    log "Keycloak already running ($(keycloak_url))"
    return 0
  fi
  log "starting Keycloak $KEYCLOAK_VERSION on $(keycloak_url) (management port $mgmt)"
  KEYCLOAK_T0=$SECONDS
  # cd: Keycloak resolves a few relative paths against the working directory.
  (
    cd "$STACK_DIR/keycloak/dist" &&
      JAVA_HOME=$(keycloak_java_home) KC_BOOTSTRAP_ADMIN_USERNAME=$KEYCLOAK_ADMIN_USER \
        KC_BOOTSTRAP_ADMIN_PASSWORD=$(secret keycloak-admin-password) \
        spawn keycloak bin/kc.sh start-dev --http-host=127.0.0.1 --http-port="$http" \
        --http-management-port="$mgmt" 8>&-
  )
  STARTED=1
}

wait_keycloak() {
  wait_for keycloak 180 "$STACK_DIR/logs/keycloak.log" \
    curl -fsS -o /dev/null "$(keycloak_url)/realms/master/.well-known/openid-configuration"
  [[ -z "$KEYCLOAK_T0" ]] || log "Keycloak ready $((SECONDS - KEYCLOAK_T0))s after its start"
}

# configure_keycloak: realms, clients, groups and users through the admin REST API
# (idempotent, ~7 s). Skipped when this Keycloak process was already configured from
# the same script, manifest and secrets (a repeated `up` stays fast).
configure_keycloak() {
  local t0=$SECONDS stamp
  stamp=$( { cat "$(pidfile keycloak)" "$HERE/lib/keycloak_realms.py" "$REPO/examples/tenants.yaml"
    secret keycloak-admin-password; secret keycloak-client-secret; secret keycloak-user-password
  } | sha256sum | cut -d' ' -f1)
  if [[ "$(state_get keycloak-configured)" == "$stamp" ]]; then
    log "Keycloak realms already configured"
    return 0
  fi
  log "configuring the Keycloak realms (log: $STACK_DIR/logs/keycloak-config.log)"
  KEYCLOAK_URL=$(keycloak_url) \
    KEYCLOAK_ADMIN_USER=$KEYCLOAK_ADMIN_USER \
    KEYCLOAK_ADMIN_PASSWORD=$(secret keycloak-admin-password) \
    KEYCLOAK_CLIENT_SECRET=$(secret keycloak-client-secret) \
    KEYCLOAK_USER_PASSWORD=$(secret keycloak-user-password) \
    python3 "$HERE/lib/keycloak_realms.py" "$REPO/examples/tenants.yaml" \
    >>"$STACK_DIR/logs/keycloak-config.log" 2>&1 ||
    { tail_log "$STACK_DIR/logs/keycloak-config.log"; die "configuring Keycloak failed"; }
  state_set keycloak-configured "$stamp"
  log "Keycloak realms configured in $((SECONDS - t0))s"
}

# keycloak_status: one line, for `e2e/stack status`; fails if it is stopped.
keycloak_status() {
  if running keycloak; then
    printf '  %-32s running  pid %s  %s\n' keycloak "$(cat "$(pidfile keycloak)")" "$(keycloak_url)"
  else
    printf '  %-32s stopped\n' keycloak; return 1
  fi
}
