#!/usr/bin/env bash
# Build the Kubernetes test toolchain (etcd, kube-apiserver, kubectl) of the
# release pinned in go.mod, from the Go module proxy, into a cache directory
# keyed by the hash of go.mod + go.sum:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/phoenix-guardian/toolchain/<hash12>/bin/
#
# Prints that bin directory on stdout (everything else goes to stderr), so that
# callers can do:  bin=$(e2e/toolchain/build.sh)
# A second run finds the binaries and returns at once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/phoenix-guardian/toolchain"
hash=$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)
bin="$cache_root/$hash/bin"
tools=(etcd kube-apiserver kubectl)

log() { printf '[toolchain] %s\n' "$*" >&2; }

# Stamp the release into the binaries the way Kubernetes' own build does
# (hack/lib/version.sh); without it /version and `kubectl version` report
# v0.0.0-master+$Format:%H$, which clients fail to parse. Link-time only, so
# the compile cache is still used.
kube_version=$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$here/go.mod")
[[ "$kube_version" =~ ^v([0-9]+)\.([0-9]+)\. ]] || { log "no k8s.io/kubernetes version in go.mod"; exit 1; }
ldflags='-s -w'
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=${BASH_REMATCH[1]}"
  ldflags+=" -X $pkg.gitMinor=${BASH_REMATCH[2]} -X $pkg.gitTreeState=clean"
done

# have_all: the binaries are there and were linked with these very flags
# (bin/.ldflags), so that a change of this recipe rebuilds them.
have_all() {
  local t
  for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || return 1; done
  [[ "$(cat "$bin/.ldflags" 2>/dev/null)" == "$ldflags" ]]
}

if have_all; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache_root"
# One build at a time per machine (several stacks may start at once); the
# second one finds the binaries when the lock is released.
exec 8>"$cache_root/.lock"
flock 8
if have_all; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "go is not on PATH (Go >= 1.26 is needed)"; exit 1; }

# Another `go build` (e.g. a cache warm-up started in the background) would
# split the two cores with ours: wait for it, our build then hits its cache.
# The pattern matches a process whose argv starts with go/.../go + "build".
waited=0
while pgrep -f '^([^ ]*/)?go build' >/dev/null; do
  if (( waited % 60 == 0 )); then
    log "waiting for a running 'go build' to finish (${waited}s so far)"
  fi
  sleep 5
  waited=$((waited + 5))
done

log "building etcd, kube-apiserver, kubectl $kube_version into $bin (cold build: 10+ minutes on 2 cores)"
start=$SECONDS
mkdir -p "$cache_root/$hash"
# Build into a scratch dir next to the final one and rename it at the end, so
# that an interrupted build never leaves a half-filled bin dir behind.
tmp=$(mktemp -d "$cache_root/$hash/bin.tmp.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
(
  cd "$here"
  go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
    go.etcd.io/etcd/server/v3 \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kubectl
)
# The etcd server module's main package is named after its directory.
mv "$tmp/server" "$tmp/etcd"
printf '%s' "$ldflags" >"$tmp/.ldflags"
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
log "built in $((SECONDS - start))s"
echo "$bin"
