#!/usr/bin/env bash
# Test server: a single-node Garage (a strict S3 server written in Rust) on 127.0.0.1:3900.
# Everything lives under $GARAGE_BASE (default /tmp/garage-s3), wiped on every start.
# Needs the `garage` binary on PATH or in ~/.cargo/bin: scripts/install-deps.sh runs
# `cargo install garage --locked` (about 10 minutes on 2 cores, once per machine).
# Stop with scripts/stop-garage.sh (same GARAGE_BASE); it signals only the PID recorded here.
# Garage checks SigV4 strictly, region included (region "garage" here); it has no SigV2.
# Prints "GARAGE ready" when a signed request with the test key succeeds.
set -euo pipefail

BASE=${GARAGE_BASE:-/tmp/garage-s3}
HERE=$(cd "$(dirname "$0")" && pwd)
S3_PORT=${GARAGE_S3_PORT:-3900}
RPC_PORT=${GARAGE_RPC_PORT:-3901}
REGION=${GARAGE_REGION:-garage}
# Garage key ids are 24+ characters; this pair is test-only.
ACCESS_KEY=${ACCESS_KEY:-GKTESTACCESSKEY000000000}
SECRET_KEY=${SECRET_KEY:-0000000000000000000000000000000000000000000000000000000000000000}
BUCKETS=${GARAGE_BUCKETS:-test}
GARAGE=${GARAGE_BIN:-$(command -v garage || true)}
[ -n "$GARAGE" ] || { [ -x "$HOME/.cargo/bin/garage" ] && GARAGE=$HOME/.cargo/bin/garage; } || true
[ -n "$GARAGE" ] || { echo "garage not found: run scripts/install-deps.sh (cargo install garage --locked)" >&2; exit 1; }

"$HERE/stop-garage.sh" >/dev/null 2>&1 || true
if ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qE "^(127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]):($S3_PORT|$RPC_PORT)\$"; then
  echo "port $S3_PORT or $RPC_PORT already in use (not by a garage started from $BASE)" >&2; exit 1
fi
OK=0
trap 'if [ $OK != 1 ]; then echo "start-garage.sh FAILED; log in $BASE/server.log; stopping it" >&2; "$HERE/stop-garage.sh" >&2; fi' EXIT
rm -rf "$BASE"; mkdir -p "$BASE/meta" "$BASE/data"
cat >"$BASE/garage.toml" <<EOF
metadata_dir = "$BASE/meta"
data_dir = "$BASE/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"
EOF
G() { "$GARAGE" -c "$BASE/garage.toml" "$@"; }
"$GARAGE" -c "$BASE/garage.toml" server >"$BASE/server.log" 2>&1 &
echo $! >"$BASE/garage.pid"
node=""
for _ in $(seq 1 100); do node=$(G node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break; sleep 0.1; done
[ -n "$node" ] || { echo "garage did not start; see $BASE/server.log" >&2; exit 1; }
# `node id` reads a local file; wait until the server answers RPC before configuring it
for _ in $(seq 1 100); do G status >/dev/null 2>&1 && break; sleep 0.1; done
G layout assign -z dc1 -c 1G "$node" >/dev/null
G layout apply --version 1 >/dev/null
G key import --yes -n test "$ACCESS_KEY" "$SECRET_KEY" >/dev/null
G key allow --create-bucket test >/dev/null
for b in $BUCKETS; do
  G bucket create "$b" >/dev/null
  G bucket allow --read --write --owner "$b" --key test >/dev/null
done
for _ in $(seq 1 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --aws-sigv4 "aws:amz:$REGION:s3" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    --user "$ACCESS_KEY:$SECRET_KEY" "http://127.0.0.1:$S3_PORT/" || true)
  [ "$code" = 200 ] && break; sleep 0.1
done
[ "$code" = 200 ] || { echo "signed ListBuckets failed (code $code)" >&2; exit 1; }
echo "endpoint=http://127.0.0.1:$S3_PORT region=$REGION access_key=$ACCESS_KEY buckets=$BUCKETS"
OK=1
echo "GARAGE ready"
