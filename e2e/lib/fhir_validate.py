"""Validates one FHIR R4 JSON resource read on stdin with fhir.resources 6.4.0 (R4 4.0.1).

Exit 0 when the model of its resourceType accepts it; 1 with the errors on stderr.
Bundles are validated with their entries' resources (fhir.resources parses them too).
"""

import json
import sys

from fhir.resources import construct_fhir_element


def main() -> int:
    try:
        resource = json.load(sys.stdin)
        resource_type = resource["resourceType"]
        construct_fhir_element(resource_type, resource)
    except Exception as error:  # noqa: BLE001 - every failure is a validation failure
        print(f"not valid FHIR R4: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
