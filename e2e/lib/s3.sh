# shellcheck shell=bash
# S3 in moto: the snapshot buckets the examples' Regions name
# (spec.database.snapshots.bucket), one per region, in that region.

SNAPSHOT_REGIONS=(us-east-1 eu-west-1 ap-southeast-1)

# ensure_snapshot_buckets: creates phoenix-snapshots-<region> in moto unless it exists.
ensure_snapshot_buckets() {
  local port
  port=$(port_for moto)
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    "$VENV/bin/python" - "http://127.0.0.1:$port" "${SNAPSHOT_REGIONS[@]}" <<'PY' || die "could not create the snapshot buckets in moto"
import sys, boto3
endpoint, regions = sys.argv[1], sys.argv[2:]
for region in regions:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    name = f"phoenix-snapshots-{region}"
    if name in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        continue
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    print(f"bucket {name} created", file=sys.stderr)
PY
}
