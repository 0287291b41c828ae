# shellcheck shell=bash
# The platform on top of the stack: CRDs, region Secrets, the operator and one data
# plane per region. Sourced by e2e/quickstart after lib/common.sh; expects the stack's
# env file to be sourced (KUBECONFIG, PG_ADMIN_DSN_<R>, ...).

REGIONS=(us-east-1 eu-west-1 ap-southeast-1)
OPERATOR_NAMESPACE=phoenix-system
TARGET=${CARGO_TARGET_DIR:-$REPO/target}/debug

# upper REGION: us-east-1 -> US_EAST_1
upper() { local s=${1^^}; printf '%s' "${s//-/_}"; }

install_crds() {
  log "installing the CRDs"
  kubectl apply --server-side --force-conflicts -f "$REPO/crds/crds.yaml" >/dev/null
  kubectl wait --for=condition=Established crd/regions.phoenixguardian.io crd/tenants.phoenixguardian.io \
    crd/idpconnections.phoenixguardian.io --timeout=60s >/dev/null
}

# secret_apply NAME KEY VALUE: create or update a one-key Secret in the operator namespace.
secret_apply() {
  kubectl -n "$OPERATOR_NAMESPACE" create secret generic "$1" --from-literal="$2=$3" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

# tls_region REGION: its primary accepts TLS only (the stack's DSN verifies it).
tls_region() {
  local var
  var="PG_ADMIN_DSN_$(upper "$1")"
  [[ "${!var}" == *sslrootcert=* ]]
}

# The Regions of examples/ name these Secrets for their databases' admin DSNs. A TLS
# region's DSN carries no file path (the operator may run elsewhere): it says
# sslmode=require, and the Region's spec upgrades that to verify-full with the CA from
# region-<r>-db-ca (key ca.crt, its spec.database.writer.caSecretRef).
create_region_secrets() {
  log "creating the region database Secrets"
  local r var
  for r in "${REGIONS[@]}"; do
    var="PG_ADMIN_DSN_$(upper "$r")"
    if tls_region "$r"; then
      secret_apply "region-$r-db" dsn "${!var%%\?*}?sslmode=require"
      kubectl -n "$OPERATOR_NAMESPACE" create secret generic "region-$r-db-ca" \
        --from-file=ca.crt="$PG_CA_FILE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
    else
      secret_apply "region-$r-db" dsn "${!var}"
    fi
  done
  secret_apply region-us-east-1-replica-db dsn "$PG_REPLICA_DSN_US_EAST_1"
}

start_operator() {
  local port
  port=$(port_for operator-probes)
  if running operator; then
    log "operator already running (probes on 127.0.0.1:$port)"
    return 0
  fi
  log "starting the operator (probes and metrics on http://127.0.0.1:$port)"
  OPERATOR_NAMESPACE=$OPERATOR_NAMESPACE PROBE_ADDR=127.0.0.1:$port RESYNC_SECONDS=${RESYNC_SECONDS:-60} \
    spawn operator "$TARGET/phoenix-operator"
  wait_for operator 60 "$STACK_DIR/logs/operator.log" curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"
  set_env OPERATOR_METRICS_URL "http://127.0.0.1:$port/metrics"
}

# set_env NAME VALUE: one export line in the env file, replaced if present.
set_env() {
  local f="$STACK_DIR/env"
  sed -i "/^export $1=/d" "$f"
  printf "export %s='%s'\n" "$1" "$2" >>"$f"
}

start_dataplanes() {
  local r R port admin url ca
  for r in "${REGIONS[@]}"; do
    R=$(upper "$r")
    port=$(port_for "dataplane-$r")
    admin=$(port_for "dataplane-$r-admin")
    if ! running "dataplane-$r"; then
      # The operator generates the data plane's credentials (a role without BYPASSRLS).
      url=$(kubectl -n "$OPERATOR_NAMESPACE" get secret "phoenix-dataplane-$r" -o jsonpath='{.data.databaseUrl}' | base64 -d)
      ca=
      if tls_region "$r"; then
        # The server is TLS-only: verify it fully against the stack's CA.
        [[ "$url" == *sslmode=* ]] || url+=$([[ "$url" == *\?* ]] && echo '&' || echo '?')sslmode=verify-full
        ca=$PG_CA_FILE
      fi
      log "starting the $r data plane on http://127.0.0.1:$port (metrics on http://127.0.0.1:$admin)${ca:+ (TLS, CA $ca)}"
      DATABASE_URL=$url LISTEN_ADDR=127.0.0.1:$port ADMIN_LISTEN_ADDR=127.0.0.1:$admin REGION=$r \
        spawn "dataplane-$r" env ${ca:+"DATABASE_CA_FILE=$ca"} "$TARGET/phoenix-dataplane"
      wait_for "dataplane-$r" 60 "$STACK_DIR/logs/dataplane-$r.log" curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz"
    fi
    set_env "DATAPLANE_URL_$R" "http://127.0.0.1:$port"
    set_env "DATAPLANE_METRICS_URL_$R" "http://127.0.0.1:$admin/metrics"
  done
}

# apply_idpconnections: examples/idpconnections.yaml with ${KEYCLOAK_URL} replaced by the
# stack's Keycloak, and the Secret with its client secret; waits until the operator has
# validated each against its realm and published the tenant's SSO settings.
apply_idpconnections() {
  log "applying examples/idpconnections.yaml (issuers under $KEYCLOAK_URL)"
  secret_apply keycloak-phoenix-dataplane clientSecret "$KEYCLOAK_CLIENT_SECRET"
  sed "s|\${KEYCLOAK_URL}|$KEYCLOAK_URL|g" "$REPO/examples/idpconnections.yaml" | kubectl apply -f - >/dev/null
  # The operator validates each against its realm and publishes the tenant's SSO settings.
  kubectl wait --for=condition=Ready idpconnection --all --timeout=120s >/dev/null || {
    kubectl get idpconnections -o wide; tail_log "$STACK_DIR/logs/operator.log"
    die "IdPConnections did not become Ready"; }
}

# provision_scim_users: every example IdPConnection enables SCIM, so the data plane admits
# only users its IdP provisioned. Do what the IdP would: create alice@<tenant>.example and
# bob@<tenant>.example (userName = the email their tokens carry) through each tenant's
# data plane SCIM API, with the token the operator generated into Secret
# phoenix-scim-<idp>. Users already there (a second run) are kept; suspended tenants
# (which the data plane does not serve) are left out.
provision_scim_users() {
  local idp tenant host region R url token user code deadline
  # shellcheck disable=SC1091
  source "$STACK_DIR/env"
  while read -r idp tenant; do
    [[ -n "$idp" ]] || continue
    if [[ $(kubectl get tenant "$tenant" -o jsonpath='{.spec.suspended}') == true ]]; then
      log "not provisioning users of $tenant: it is suspended"
      continue
    fi
    host=$(kubectl get tenant "$tenant" -o jsonpath='{.spec.dns.hostname}')
    region=$(kubectl get tenant "$tenant" -o jsonpath='{.status.placement.region}')
    R=$(upper "$region")
    url=$(eval "printf '%s' \"\${DATAPLANE_URL_$R:-}\"")
    [[ -n "$url" && -n "$host" ]] || die "no data plane for tenant $tenant (region '$region')"
    token=$(kubectl -n "$OPERATOR_NAMESPACE" get secret "phoenix-scim-$idp" -o jsonpath='{.data.token}' | base64 -d)
    [[ -n "$token" ]] || die "Secret phoenix-scim-$idp has no SCIM token"
    # The data plane picks the token up from the catalog within seconds.
    deadline=$((SECONDS + 60))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" -H "Authorization: Bearer $token" \
      "$url/scim/v2/ServiceProviderConfig") == 200 ]]; do
      (( SECONDS < deadline )) || die "the $region data plane does not accept $tenant's SCIM token"
      sleep 1
    done
    for user in alice bob; do
      code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Host: $host" \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/scim+json' \
        -d "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:User\"],\"userName\":\"$user@$tenant.example\",\"active\":true,\"emails\":[{\"value\":\"$user@$tenant.example\",\"type\":\"work\",\"primary\":true}]}" \
        "$url/scim/v2/Users")
      [[ $code == 201 || $code == 409 ]] || die "provisioning $user@$tenant.example through SCIM answered $code"
    done
    log "provisioned alice and bob of $tenant through its SCIM API"
  done < <(kubectl get idpconnections -o jsonpath='{range .items[*]}{.metadata.name} {.spec.tenantRef}{"\n"}{end}')
}

# keycloak_token TENANT USER: an access token of USER (alice, bob) of TENANT's realm in the
# stack's Keycloak, by the password grant the local realms allow.
keycloak_token() {
  local tenant=$1 user=$2
  curl -fsS "$KEYCLOAK_URL/realms/$tenant/protocol/openid-connect/token" \
    -d grant_type=password -d client_id="$KEYCLOAK_CLIENT_ID" \
    -d client_secret="$KEYCLOAK_CLIENT_SECRET" -d username="$user" \
    -d password="$KEYCLOAK_USER_PASSWORD" -d scope=openid |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# seed_clinical_data: every served example tenant with an IdP gets a few synthetic
# patients, encounters, SOAP notes and medication requests (e2e/lib/seed.py), written by
# its physician alice through the data plane's FHIR API with a token of its Keycloak
# realm. Tenants already seeded are left as they are.
seed_clinical_data() {
  local idp tenant host region R url token
  # shellcheck disable=SC1091
  source "$STACK_DIR/env"
  while read -r idp tenant; do
    [[ -n "$idp" ]] || continue
    [[ $(kubectl get tenant "$tenant" -o jsonpath='{.spec.suspended}') == true ]] && continue
    host=$(kubectl get tenant "$tenant" -o jsonpath='{.spec.dns.hostname}')
    region=$(kubectl get tenant "$tenant" -o jsonpath='{.status.placement.region}')
    R=$(upper "$region")
    url=$(eval "printf '%s' \"\${DATAPLANE_URL_$R:-}\"")
    [[ -n "$url" && -n "$host" ]] || die "no data plane for tenant $tenant (region '$region')"
    token=$(keycloak_token "$tenant" alice) || die "no token for alice of $tenant from Keycloak"
    python3 "$(dirname "${BASH_SOURCE[0]}")/seed.py" --url "$url" --host "$host" --tenant "$tenant" --token "$token" ||
      die "seeding $tenant failed"
  done < <(kubectl get idpconnections -o jsonpath='{range .items[*]}{.metadata.name} {.spec.tenantRef}{"\n"}{end}')
}
