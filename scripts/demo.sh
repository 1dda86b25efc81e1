#!/usr/bin/env bash
# The main job, end to end, on this machine (README's first command):
#   1. install what is missing (Debian packages for a local Ceph RGW, boto3; needs root);
#   2. build s3linkfs (release);
#   3. use the S3 server given by S3LINKFS_DEMO_ENDPOINT (+ _REGION, _ACCESS_KEY,
#      _SECRET_KEY), else a local Ceph RGW on 127.0.0.1:7480 (reused if one answers,
#      else started, and stopped again at the end unless --keep);
#   4. create bucket `demo` with sample objects (boto3, an independent client);
#   5. make share links with `s3linkfs presign` and fetch them with curl;
#   6. mount the bucket: read files, get a link with getfattr, set a download name
#      with setfattr; unmounted again at the end.
#
# Usage: scripts/demo.sh [--keep]     --keep leaves a started RGW running
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
KEEP=0
for a in "$@"; do
  case $a in
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

BUCKET=demo
WORK=$(mktemp -d /tmp/s3linkfs-demo.XXXXXX)
STARTED_RGW=0

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# show CMD...: prints the command (shell-quoted) on stderr, then runs it
show() {
  local a line='$'
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then line+=" $a"; else line+=" '${a//\'/\'\\\'\'}'"; fi
  done
  printf '%s\n' "$line" >&2
  "$@"
}
cleanup() {
  unmount
  if [ $STARTED_RGW = 1 ] && [ $KEEP = 0 ]; then
    echo; echo "demo.sh: stopping the RGW it started (use --keep to leave it running)"
    scripts/stop-rgw.sh >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step_install() {
  step "1. dependencies (scripts/install-deps.sh; garage is only needed for the tests)"
  SKIP_GARAGE=1 scripts/install-deps.sh
}

step_build() {
  step "2. build"
  cargo build --release --quiet
  S3LINKFS=$ROOT/target/release/s3linkfs
  echo "built $S3LINKFS"
}

step_server() {
  step "3. S3 server"
  if [ -n "${S3LINKFS_DEMO_ENDPOINT:-}" ]; then
    ENDPOINT=$S3LINKFS_DEMO_ENDPOINT
    REGION=${S3LINKFS_DEMO_REGION:-us-east-1}
    ACCESS=${S3LINKFS_DEMO_ACCESS_KEY:?set S3LINKFS_DEMO_ACCESS_KEY}
    SECRET=${S3LINKFS_DEMO_SECRET_KEY:?set S3LINKFS_DEMO_SECRET_KEY}
    echo "using $ENDPOINT (S3LINKFS_DEMO_ENDPOINT)"
    return
  fi
  server_env rgw
  if answers; then
    echo "reusing the local Ceph RGW at $ENDPOINT"
  else
    echo "starting a local Ceph RGW at $ENDPOINT (scripts/start-rgw.sh, about 5 s)"
    STARTED_RGW=1
    scripts/start-rgw.sh >"$WORK/start-rgw.log" 2>&1 || { cat "$WORK/start-rgw.log" >&2; exit 1; }
  fi
}

step_sample_data() {
  step "4. bucket '$BUCKET' with sample objects (uploaded with boto3)"
  printf 'Hello from s3linkfs!\n' >"$WORK/greeting.txt"
  head -c 200000 /dev/urandom >"$WORK/report.bin"
  export S3_ENDPOINT=$ENDPOINT S3_REGION=$REGION S3_ACCESS_KEY=$ACCESS S3_SECRET_KEY=$SECRET
  fixture() { "${PYTHON:-python3}" scripts/s3fixture.py "$@"; }
  fixture mkbucket "$BUCKET"
  fixture put "$BUCKET" hello/greeting.txt "$WORK/greeting.txt" text/plain
  fixture put "$BUCKET" "reports/2024 Q1 (final).bin" "$WORK/report.bin" application/octet-stream
  printf '  s3://%s/%s\n' "$BUCKET" hello/greeting.txt "$BUCKET" "reports/2024 Q1 (final).bin"
  # A profile for this server, private as a config file with a secret should be.
  CONFIG=$WORK/config.toml
  ( umask 077; cat >"$CONFIG" <<EOF
default_profile = "demo"
[profiles.demo]
endpoint = "$ENDPOINT"
region = "$REGION"
access_key = "$ACCESS"
secret_key = "$SECRET"
EOF
  )
  export S3LINKFS_CONFIG=$CONFIG
  echo "profile 'demo' written to $CONFIG (S3LINKFS_CONFIG points to it)"
}

step_presign() {
  step "5. share links: s3linkfs presign (computed locally, no request)"
  local url
  url=$(show "$S3LINKFS" presign "s3://$BUCKET/hello/greeting.txt" --expires-in 1h)
  echo "$url"
  echo "fetched with curl:"
  show curl -sS --fail "$url"

  url=$(show "$S3LINKFS" presign "s3://$BUCKET/reports/2024 Q1 (final).bin" --download-as 'Rapport Q1 – final.bin')
  echo "$url"
  echo "fetched with curl (headers; the body is checked against the upload):"
  curl -sS --fail -D "$WORK/headers" -o "$WORK/downloaded.bin" "$url"
  grep -i '^content-disposition' "$WORK/headers"
  cmp "$WORK/report.bin" "$WORK/downloaded.bin" && echo "body: $(wc -c <"$WORK/downloaded.bin") bytes, identical"

  echo "a tampered link is refused:"
  local last=${url: -1} repl=0
  [ "$last" = 0 ] && repl=1
  printf 'HTTP %s\n' "$(curl -s -o /dev/null -w '%{http_code}' "${url%?}$repl")"
}

step_mount() {
  step "6. the mount: the bucket as files, links and download names as extended attributes"
  MNT=$WORK/mnt
  mkdir -p "$MNT"
  show "$S3LINKFS" mount "s3://$BUCKET" "$MNT"    # returns once the mount is ready
  MOUNTED=1
  show ls -l "$MNT/hello" "$MNT/reports"
  show cat "$MNT/hello/greeting.txt"
  local f="$MNT/reports/2024 Q1 (final).bin" url
  url=$(show getfattr --absolute-names --only-values -n user.s3.presign "$f")
  echo "$url"
  echo "fetched with curl: HTTP $(curl -s -o /dev/null -w '%{http_code}' "$url")"
  echo "change the download name in place (a CopyObject that keeps every other header):"
  show setfattr -n user.s3.content_disposition -v 'attachment; filename="Q1-final.bin"' "$f"
  show getfattr --absolute-names --only-values -n user.s3.content_disposition "$f"; echo
  echo "a plain GET now carries it:"
  url=$(getfattr --absolute-names --only-values -n user.s3.presign "$f")
  curl -sS --fail -D - -o /dev/null "$url" | grep -i '^content-disposition'
}

unmount() {
  if [ "${MOUNTED:-0}" = 1 ]; then
    fusermount3 -u "$MNT" 2>/dev/null || umount "$MNT" 2>/dev/null || true
    MOUNTED=0
  fi
}

step_install
step_build
step_server
step_sample_data
step_presign
step_mount
unmount
step "done"
echo "Try: export S3LINKFS_CONFIG=$WORK/config.toml"
echo "     $S3LINKFS presign s3://$BUCKET/hello/greeting.txt"
echo "     $S3LINKFS mount s3://$BUCKET /some/dir   (needs the server running: --keep)"
echo "     fusermount3 -u /some/dir                     (unmounts; the process exits)"
echo "Your own endpoint: S3LINKFS_DEMO_ENDPOINT=https://s3.example.com S3LINKFS_DEMO_REGION=... \\"
echo "     S3LINKFS_DEMO_ACCESS_KEY=... S3LINKFS_DEMO_SECRET_KEY=... scripts/demo.sh"
echo "  or a profile in ~/.config/s3linkfs/config.toml (see config/example.toml; aws CLI"
echo "  profiles in ~/.aws work as they are): $S3LINKFS mount --profile NAME s3://BUCKET DIR"
[ $STARTED_RGW = 1 ] && [ $KEEP = 0 ] && echo "(the RGW stops now; scripts/demo.sh --keep leaves it running)"
exit 0
