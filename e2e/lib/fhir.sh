# shellcheck shell=bash
# fhir.resources, the external FHIR R4 model the tests validate every served resource,
# Bundle, OperationOutcome and the CapabilityStatement with. Sourced by e2e/stack after
# lib/common.sh.
#
#   install   fhir.resources 6.4.0 (FHIR R4 4.0.1) with pydantic 1 into a venv of its own
#             under $CACHE_DIR (scim2-tester needs pydantic 2: they cannot share one), once
#             per machine, under a lock so that two stacks never install at once
#   env       FHIR_VALIDATE: a command that reads one FHIR JSON resource on stdin and exits
#             0 when fhir.resources accepts it as R4, else 1 with the errors on stderr

FHIR_RESOURCES_VERSION=6.4.0
FHIR_VENV="$CACHE_DIR/fhir-venv"

ensure_fhir_resources() {
  local marker="$FHIR_VENV/.fhir.resources-$FHIR_RESOURCES_VERSION"
  [[ -x "$FHIR_VENV/bin/python" && -f "$marker" ]] && return 0
  mkdir -p "$CACHE_DIR"
  exec 7>"$CACHE_DIR/.fhir.lock"
  flock -w 600 7 || die "another stack has been installing fhir.resources for 10 minutes"
  if [[ ! -x "$FHIR_VENV/bin/python" || ! -f "$marker" ]]; then
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3-venv
    log "installing fhir.resources==$FHIR_RESOURCES_VERSION (pydantic<2) into $FHIR_VENV"
    [[ -x "$FHIR_VENV/bin/pip" ]] || python3 -m venv "$FHIR_VENV"
    # 6.4.0 does not pin pydantic, and fails to import under pydantic 2 (TESTBED.md).
    "$FHIR_VENV/bin/pip" install -q --disable-pip-version-check \
      "fhir.resources==$FHIR_RESOURCES_VERSION" "pydantic>=1.10,<2" ||
      die "installing fhir.resources failed (PyPI reachable?)"
    "$FHIR_VENV/bin/python" -c 'import fhir.resources.patient' ||
      die "fhir.resources does not import"
    touch "$marker"
  fi
  exec 7>&-
}

fhir_validate() { printf '%s %s' "$FHIR_VENV/bin/python" "$HERE/lib/fhir_validate.py"; }
