# shellcheck shell=bash
# Route53 in moto: the hosted zone the examples' Regions name (spec.dns.zoneName).

# The example zone. Tenants' host names in examples/ lie inside it.
DNS_ZONE=${DNS_ZONE:-phoenixguardian.test.}

# ensure_dns_zone: creates $DNS_ZONE in moto unless a zone of that name exists
# (idempotent: moto, like Route53, allows several zones of one name, so look first).
ensure_dns_zone() {
  local port
  port=$(port_for moto)
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    "$VENV/bin/python" - "http://127.0.0.1:$port" "$DNS_ZONE" <<'PY' || die "could not create the hosted zone $DNS_ZONE in moto"
import sys, time, boto3
endpoint, name = sys.argv[1], sys.argv[2]
r53 = boto3.client("route53", endpoint_url=endpoint, region_name="us-east-1")
zones = [z for z in r53.list_hosted_zones_by_name(DNSName=name)["HostedZones"] if z["Name"] == name]
if zones:
    print(f"hosted zone {name} exists: {zones[0]['Id']}", file=sys.stderr)
else:
    z = r53.create_hosted_zone(Name=name, CallerReference=f"phoenix-e2e-{time.time_ns()}")
    print(f"hosted zone {name} created: {z['HostedZone']['Id']}", file=sys.stderr)
PY
}
