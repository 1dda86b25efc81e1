#!/usr/bin/env bash
# Client benchmark: 1 GiB GET through s3linkfs' HttpClient vs curl, and a
# 10k-key listing vs `aws s3api list-objects-v2`, against one real server.
#
# Usage: scripts/bench-client.sh [rgw|garage]   (default: rgw)
# The S3LINKFS_TEST_* variables override the per-server defaults below.
# Fixtures (bench/1gib.bin, bench/list10k/...) are created once in the bucket.
set -euo pipefail
cd "$(dirname "$0")/.."

server=${1:-rgw}
case "$server" in
  rgw)
    : "${S3LINKFS_TEST_ENDPOINT:=http://127.0.0.1:7480}"
    : "${S3LINKFS_TEST_REGION:=us-east-1}"
    : "${S3LINKFS_TEST_ACCESS_KEY:=AKIDEXAMPLE}"
    : "${S3LINKFS_TEST_SECRET_KEY:=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY}"
    ;;
  garage)
    : "${S3LINKFS_TEST_ENDPOINT:=http://127.0.0.1:3900}"
    : "${S3LINKFS_TEST_REGION:=garage}"
    : "${S3LINKFS_TEST_ACCESS_KEY:=GKTESTACCESSKEY000000000}"
    : "${S3LINKFS_TEST_SECRET_KEY:=0000000000000000000000000000000000000000000000000000000000000000}"
    ;;
  *) echo "usage: $0 [rgw|garage]" >&2; exit 2 ;;
esac
: "${S3LINKFS_TEST_BUCKET:=s3linkfs-bench}"
export S3LINKFS_TEST_ENDPOINT S3LINKFS_TEST_REGION S3LINKFS_TEST_ACCESS_KEY \
       S3LINKFS_TEST_SECRET_KEY S3LINKFS_TEST_BUCKET
export S3LINKFS_TEST_SERVER=$server

for tool in curl aws; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

# The bucket must exist; create it if not (ignore "already owned").
AWS_ACCESS_KEY_ID=$S3LINKFS_TEST_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3LINKFS_TEST_SECRET_KEY \
AWS_DEFAULT_REGION=$S3LINKFS_TEST_REGION AWS_CA_BUNDLE= \
  aws --endpoint-url "$S3LINKFS_TEST_ENDPOINT" s3api create-bucket \
      --bucket "$S3LINKFS_TEST_BUCKET" >/dev/null 2>&1 || true

cargo build --release --example bench_client
echo "== $server ($S3LINKFS_TEST_ENDPOINT, bucket $S3LINKFS_TEST_BUCKET)"
target/release/examples/bench_client
