#!/usr/bin/env bash
# Build Helm (the version pinned below) from the Go module proxy into
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/phoenix-guardian/helm/<version>/helm
#
# and print that path on stdout (everything else goes to stderr):
#   helm=$(e2e/toolchain/helm.sh)
# A second run finds the binary and returns at once. Cold: about 2 minutes on 2 cores.
set -euo pipefail

version=v3.22.0
dir="${XDG_CACHE_HOME:-$HOME/.cache}/phoenix-guardian/helm/$version"
log() { printf '[helm] %s\n' "$*" >&2; }

if [[ -x "$dir/helm" ]]; then
  echo "$dir/helm"
  exit 0
fi
mkdir -p "$dir"
# One build at a time per machine; the second finds the binary once the lock is free.
exec 8>"$dir/.lock"
flock 8
if [[ -x "$dir/helm" ]]; then
  echo "$dir/helm"
  exit 0
fi
command -v go >/dev/null || { log "go is not on PATH (Go >= 1.26 is needed)"; exit 1; }

log "building helm $version into $dir (cold build: about 2 minutes)"
start=$SECONDS
tmp=$(mktemp -d "$dir/bin.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Without the version stamp `helm version` says v3.x-unreleased; lint and template work
# offline either way.
GOBIN=$tmp GOFLAGS="-mod=mod -buildvcs=false" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
  "helm.sh/helm/v3/cmd/helm@$version"
mv "$tmp/helm" "$dir/helm"
log "built in $((SECONDS - start))s"
echo "$dir/helm"
