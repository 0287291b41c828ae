# shellcheck shell=bash
# scim2-tester, the external SCIM 2.0 compliance checker the e2e suite runs against the
# data plane, with its CLI (scim2-cli). Sourced by e2e/stack after lib/common.sh.
#
#   install   scim2-tester + scim2-cli (PyPI, pinned) into a venv of their own under
#             $CACHE_DIR (they need pydantic 2, which fhir.resources' R4 cannot share),
#             once per machine, under a lock so that two stacks never install at once
#   env       SCIM2_CLI: the `scim2` command (`scim2 --url U -h 'Authorization: Bearer T' test`)

SCIM2_TESTER_VERSION=0.5.2
SCIM2_CLI_VERSION=0.6.0
SCIM2_VENV="$CACHE_DIR/scim2-venv"

ensure_scim2() {
  local marker="$SCIM2_VENV/.scim2-tester-$SCIM2_TESTER_VERSION-cli-$SCIM2_CLI_VERSION"
  [[ -x "$SCIM2_VENV/bin/scim2" && -f "$marker" ]] && return 0
  mkdir -p "$CACHE_DIR"
  exec 7>"$CACHE_DIR/.scim2.lock"
  flock -w 600 7 || die "another stack has been installing scim2-tester for 10 minutes"
  if [[ ! -x "$SCIM2_VENV/bin/scim2" || ! -f "$marker" ]]; then
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv
    log "installing scim2-tester==$SCIM2_TESTER_VERSION scim2-cli==$SCIM2_CLI_VERSION into $SCIM2_VENV"
    [[ -x "$SCIM2_VENV/bin/pip" ]] || python3 -m venv "$SCIM2_VENV"
    "$SCIM2_VENV/bin/pip" install -q --disable-pip-version-check \
      "scim2-tester==$SCIM2_TESTER_VERSION" "scim2-cli==$SCIM2_CLI_VERSION" "pydantic>=2,<3" ||
      die "installing scim2-tester failed (PyPI reachable?)"
    "$SCIM2_VENV/bin/scim2" --help >/dev/null || die "the scim2 command does not run"
    touch "$marker"
  fi
  exec 7>&-
}

scim2_cli() { printf '%s' "$SCIM2_VENV/bin/scim2"; }
