# shellcheck shell=bash disable=SC2034  # STARTED is read by e2e/stack
# etcd + kube-apiserver on loopback, the way envtest runs them: serving certs
# from a throwaway CA, service-account keys, a static admin token (group
# system:masters), RBAC, no controller-manager. Sourced by e2e/stack.

# make_certs: CA, serving cert for 127.0.0.1/localhost, SA key pair, token
# file. Made once per stack; kept across restarts of the apiserver.
make_certs() {
  local d="$STACK_DIR/pki"
  [[ -s "$d/sa.pub" ]] && return 0
  log "generating CA, serving certificate and service-account keys"
  mkdir -p "$d"
  chmod 700 "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj '/CN=phoenix-e2e-ca' \
    -addext 'basicConstraints=critical,CA:TRUE' \
    -addext 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature' \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -new -newkey rsa:2048 -nodes -subj '/CN=kube-apiserver' \
    -keyout "$d/apiserver.key" -out "$d/apiserver.csr" 2>/dev/null
  cat >"$d/apiserver.ext" <<'EOF'
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
EOF
  openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 \
    -extfile "$d/apiserver.ext" -out "$d/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  # Static token file: token,user,uid,"groups"
  printf '%s,admin,admin,"system:masters"\n' "$(secret admin-token)" >"$d/tokens.csv"
}

start_etcd() {
  local cport pport url
  cport=$(port_for etcd-client)
  pport=$(port_for etcd-peer)
  url="http://127.0.0.1:$cport"
  if running etcd; then
    log "etcd already running ($url)"
    return 0
  fi
  log "starting etcd on $url"
  spawn etcd "$TOOLCHAIN_BIN/etcd" \
    --name stack --data-dir "$STACK_DIR/etcd" \
    --listen-client-urls "$url" --advertise-client-urls "$url" \
    --listen-peer-urls "http://127.0.0.1:$pport" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
    --initial-cluster "stack=http://127.0.0.1:$pport" \
    --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn
  wait_for etcd 30 "$STACK_DIR/logs/etcd.log" curl -fsS "$url/health"
  STARTED=1
}

# apiserver_ready: /readyz answers "ok" over TLS with the admin token.
apiserver_ready() {
  curl -fsS --cacert "$STACK_DIR/pki/ca.crt" \
    -H "Authorization: Bearer $(secret admin-token)" \
    "https://127.0.0.1:$(port_for apiserver)/readyz"
}

start_apiserver() {
  local port d="$STACK_DIR/pki"
  port=$(port_for apiserver)
  if running kube-apiserver; then
    log "kube-apiserver already running (https://127.0.0.1:$port)"
  else
    log "starting kube-apiserver on https://127.0.0.1:$port"
    # ServiceAccount admission is off because no controller-manager creates
    # the default service accounts (envtest does the same).
    spawn kube-apiserver "$TOOLCHAIN_BIN/kube-apiserver" \
      --etcd-servers "http://127.0.0.1:$(port_for etcd-client)" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
      --secure-port "$port" --cert-dir "$d" \
      --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" \
      --client-ca-file "$d/ca.crt" \
      --service-account-key-file "$d/sa.pub" \
      --service-account-signing-key-file "$d/sa.key" \
      --service-account-issuer https://127.0.0.1 \
      --authorization-mode RBAC \
      --token-auth-file "$d/tokens.csv" \
      --service-cluster-ip-range 10.0.0.0/24 \
      --allow-privileged=true \
      --disable-admission-plugins ServiceAccount
    STARTED=1
  fi
  wait_for kube-apiserver 120 "$STACK_DIR/logs/kube-apiserver.log" apiserver_ready
}

write_kubeconfig() {
  local f="$STACK_DIR/kubeconfig"
  ( umask 077
    cat >"$f" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: phoenix-e2e
  cluster:
    server: https://127.0.0.1:$(port_for apiserver)
    certificate-authority-data: $(base64 -w0 <"$STACK_DIR/pki/ca.crt")
users:
- name: admin
  user:
    token: $(secret admin-token)
contexts:
- name: phoenix-e2e
  context:
    cluster: phoenix-e2e
    user: admin
current-context: phoenix-e2e
EOF
  )
}

# init_cluster: the namespace the operator writes its secrets to, then a smoke
# test of the kubeconfig with the real kubectl.
init_cluster() {
  local kc=(--kubeconfig "$STACK_DIR/kubeconfig")
  "$TOOLCHAIN_BIN/kubectl" "${kc[@]}" get namespace phoenix-system >/dev/null 2>&1 ||
    "$TOOLCHAIN_BIN/kubectl" "${kc[@]}" create namespace phoenix-system >/dev/null
  "$TOOLCHAIN_BIN/kubectl" "${kc[@]}" get namespaces >/dev/null ||
    die "kubectl get namespaces failed against the new apiserver"
}
