#!/usr/bin/env bash
# Benchmarks, each against reference tools measured in the same run, reported
# as ratios in one table at the end (figures go into notes, never into tests).
#
# Usage: scripts/bench.sh [SECTION...]   (default: every section, in this order)
#   presign  wall time of one `s3linkfs presign` invocation vs `aws s3 presign`
#            and `s3cmd signurl` for the same object (no server). Target <= 5 ms.
#   reads    (issue 4) through a fresh mount, against the same object fetched
#            with curl on a presigned URL: cold sequential read of 1 GiB
#            (cat > /dev/null), warm re-read (same mount), random 4 KiB reads per
#            second (against ranged GETs of the presigned URL, same seeded
#            offsets, a new connection each: Garage answers small ranges ~40 ms
#            late on a reused connection, curl too), `ls -l` of a 10k-object directory
#            cold (fresh mount) and warm (again at once) against a raw paginated
#            LIST of the same prefix (scripts/bench_helper.py list: SigV4 signed
#            in-process, one kept-alive connection, delimiter '/', 1000 a page),
#            and the mount's peak RSS (VmHWM) against --cache-size.
#   xattr    (issue 5) getfattr user.s3.presign wall time per call vs
#            `s3cmd signurl`; presigns per second in one process (os.getxattr
#            loop) vs botocore's generate_presigned_url loop; S3 requests made
#            during those presigns; setfattr user.s3.content_disposition wall
#            time and requests vs `s3cmd modify --add-header` and
#            `aws s3api copy-object --metadata-directive REPLACE`.
#   writes   (issue 6) `cp` of a 1 GiB file into the mount (cp returns after
#            close(), which returns once the upload is complete) vs `aws s3 cp`
#            and a single curl PUT (--aws-sigv4, UNSIGNED-PAYLOAD) of the same
#            file; `cp -r` of 1000 small files vs `aws s3 cp --recursive`.
# Where s3fs or rclone are installed, reads and writes also run them side by side
# (rows marked "info"; the ratio is theirs against the same reference).
#
# Request counts come from a counting relay (bench_helper.py proxy) between a
# second mount and the server: it logs one line per HTTP request it forwards, so
# the count covers exactly that mount's traffic, whatever else uses the server.
#
# Server: SERVER=garage (default; the issues' reference figures were taken on
# Garage) or SERVER=rgw, at the scripts/lib.sh coordinates. The server must be
# running already: it is reused and never stopped. Only with BENCH_START_SERVER=1,
# and only when nothing listens on its port, does bench.sh start one
# (scripts/start-$SERVER.sh, which wipes that server's data) and stop it at the end. Bucket: BENCH_BUCKET (default
# `bench`); fixtures live under fx/ in it and are reused by later runs, anything
# written goes under w/ and is deleted. The local 1 GiB file is kept in
# BENCH_FIXTURES (default /tmp/s3linkfs-bench-fixtures).
#
# Environment: BENCH_RUNS (default 3; each measure is the median of that many),
# CACHE_SIZE (default 256M, the mount's default), RAND_READS (default 1000),
# PRESIGN_SECONDS (default 3), SETFATTR_RUNS (default 9), RUNS / REF_RUNS (presign
# section: default 200 / 20), NO_HYPERFINE=1 (timed loop instead of hyperfine),
# NO_SIDE_BY_SIDE=1 (skip s3fs and rclone).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
SECTIONS=(presign reads xattr writes)
WORK=$(mktemp -d /tmp/s3linkfs-bench.XXXXXX)
BIN=$ROOT/target/release/s3linkfs
HELPER=$ROOT/scripts/bench_helper.py
FIXTURE=$ROOT/scripts/s3fixture.py

SERVER=${SERVER:-garage}
BUCKET=${BENCH_BUCKET:-bench}
FIXDIR=${BENCH_FIXTURES:-/tmp/s3linkfs-bench-fixtures}
BENCH_RUNS=${BENCH_RUNS:-3}
CACHE_SIZE=${CACHE_SIZE:-256M}
RAND_READS=${RAND_READS:-1000}
PRESIGN_SECONDS=${PRESIGN_SECONDS:-3}
SETFATTR_RUNS=${SETFATTR_RUNS:-9}
RUNS=${RUNS:-200}
REF_RUNS=${REF_RUNS:-20}
GIB=$((1024 * 1024 * 1024))

MOUNT_PIDS=()     # s3linkfs / s3fs / rclone processes this script started
MOUNT_DIRS=()     # and their mountpoints
PROXY_PID=
STARTED_SERVER=

cleanup() {
  local i
  set +e
  for i in "${!MOUNT_DIRS[@]}"; do
    if mountpoint -q "${MOUNT_DIRS[$i]}" 2>/dev/null; then
      fusermount3 -u "${MOUNT_DIRS[$i]}" 2>/dev/null || fusermount3 -uz "${MOUNT_DIRS[$i]}" 2>/dev/null
    fi
  done
  for i in "${!MOUNT_PIDS[@]}"; do
    kill "${MOUNT_PIDS[$i]}" 2>/dev/null
  done
  [ -z "$PROXY_PID" ] || kill "$PROXY_PID" 2>/dev/null
  wait 2>/dev/null
  [ -z "$STARTED_SERVER" ] || "$ROOT/scripts/stop-$STARTED_SERVER.sh" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

have_hyperfine() { [ "${NO_HYPERFINE:-0}" != 1 ] && command -v hyperfine >/dev/null; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
now_ns() { date +%s%N; }

# ---------------------------------------------------------------- the table
ROWS=()
# row MEASURE OURS REFERENCE RATIO TARGET RESULT
row() { ROWS+=("$(printf '%s\t' "$@")"); }
# verdict VALUE OP LIMIT: PASS or FAIL (OP is >= or <=)
verdict() {
  if awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { exit !((op == ">=") ? v >= l : v <= l) }'; then
    echo PASS
  else
    echo FAIL
  fi
}
# calc EXPR [VAR=VALUE...]: awk arithmetic, printed with up to 3 decimals
calc() {
  local expr=$1; shift
  local args=() a
  for a in "$@"; do args+=(-v "$a"); done
  awk "${args[@]}" "BEGIN { r = $expr; printf \"%.3f\", r }" | sed -E 's/\.?0+$//'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.6f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
fmt() { printf "%.${2:-3}f" "$1"; }
mib_s() { awk -v s="$1" 'BEGIN { printf "%.0f MiB/s", 1024 / s }'; } # SECONDS for 1 GiB

print_table() {
  local cols w=(44 16 20 8 18 6) line f i
  echo
  echo "s3linkfs $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') against $SERVER ($ENDPOINT), runs per measure: $BENCH_RUNS (median)"
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
  printf "%-${w[0]}s %-${w[1]}s %-${w[2]}s %-${w[3]}s %-${w[4]}s %s\n" measure s3linkfs reference ratio target result
  printf '%s\n' "$(printf '%.0s-' {1..112})"
  for line in "${ROWS[@]}"; do
    IFS=$'\t' read -r -a cols <<<"$line"
    for i in 0 1 2 3 4; do
      f=${cols[$i]:-}
      printf "%-${w[$i]}s " "$f"
    done
    printf '%s\n' "${cols[5]:-}"
  done
}

# ------------------------------------------------------------- the server
AWS_ENV_SET=
server_setup() {
  [ -z "$AWS_ENV_SET" ] || return 0
  server_env "$SERVER"
  # A busy server can miss one probe: retry for 30 s before deciding. Starting
  # a server wipes its data (scripts/start-*.sh), so it is done only when asked
  # (BENCH_START_SERVER=1) and only when nothing listens on its port.
  local i port=${ENDPOINT##*:}
  for ((i = 0; i < 10; i++)); do
    answers && break
    sleep 3
  done
  if ! answers; then
    if ss -ltnH 2>/dev/null | awk '{ print $4 }' | grep -qE ":$port\$"; then
      echo "bench.sh: something listens on $port but $SERVER does not answer at $ENDPOINT; not touching it" >&2
      exit 1
    fi
    if [ "${BENCH_START_SERVER:-0}" != 1 ]; then
      echo "bench.sh: no $SERVER at $ENDPOINT (scripts/start-$SERVER.sh starts one; BENCH_START_SERVER=1 lets bench.sh start and stop it)" >&2
      exit 1
    fi
    log "no $SERVER answering at $ENDPOINT: starting one (scripts/start-$SERVER.sh)"
    STARTED_SERVER=$SERVER
    "$ROOT/scripts/start-$SERVER.sh" >&2
    answers || { echo "bench.sh: $SERVER does not answer at $ENDPOINT" >&2; exit 1; }
  fi
  export S3_ENDPOINT=$ENDPOINT S3_REGION=$REGION S3_ACCESS_KEY=$ACCESS S3_SECRET_KEY=$SECRET
  export AWS_ACCESS_KEY_ID=$ACCESS AWS_SECRET_ACCESS_KEY=$SECRET AWS_DEFAULT_REGION=$REGION
  export AWS_EC2_METADATA_DISABLED=true
  unset AWS_CA_BUNDLE AWS_PROFILE
  python3 "$FIXTURE" mkbucket "$BUCKET"
  write_config "$WORK/direct.toml" "$ENDPOINT"
  write_s3cmd_config "$WORK/s3cmd-direct.cfg" "${ENDPOINT#http://}"
  cargo build --release --quiet
  AWS_ENV_SET=1
}

# write_config FILE ENDPOINT: an s3linkfs config with one profile `bench`
write_config() {
  (umask 077; printf 'default_profile = "bench"\n[profiles.bench]\nendpoint = "%s"\nregion = "%s"\naccess_key = "%s"\nsecret_key = "%s"\n' \
    "$2" "$REGION" "$ACCESS" "$SECRET" >"$1")
}
# write_s3cmd_config FILE HOST:PORT (path style, SigV4 for Garage, v2 allowed on RGW)
write_s3cmd_config() {
  (umask 077; printf '[default]\naccess_key = %s\nsecret_key = %s\nhost_base = %s\nhost_bucket = %s\nbucket_location = %s\nuse_https = False\nsignature_v2 = False\n' \
    "$ACCESS" "$SECRET" "$2" "$2" "$REGION" >"$1")
}

# curl_s3 [CURL ARGS...] URL: a SigV4-signed request to the server
curl_s3() {
  curl -sS -f --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS:$SECRET" "$@"
}
object_size() { # KEY: its size, or nothing when missing
  curl -sS -I --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS:$SECRET" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "$ENDPOINT/$BUCKET/$1" 2>/dev/null |
    awk 'tolower($1) == "content-length:" { print $2 + 0 } NR == 1 && $2 != 200 { exit }'
}
aws_s3() { aws --endpoint-url "$ENDPOINT" "$@"; }
delete_prefix() { aws_s3 s3 rm --recursive --quiet "s3://$BUCKET/$1" >/dev/null 2>&1 || true; }

# ------------------------------------------------------------- fixtures
hex() { printf %s "$1" | od -An -v -tx1 | tr -d ' \n'; }
local_big_file() {
  mkdir -p "$FIXDIR"
  if [ "$(stat -c %s "$FIXDIR/1gib.bin" 2>/dev/null || echo 0)" != "$GIB" ]; then
    log "writing $FIXDIR/1gib.bin (random bytes)"
    head -c "$GIB" /dev/urandom >"$FIXDIR/1gib.bin.tmp"
    mv "$FIXDIR/1gib.bin.tmp" "$FIXDIR/1gib.bin"
  fi
}
ensure_big_object() {
  local_big_file
  if [ "$(object_size fx/1gib.bin)" != "$GIB" ]; then
    log "uploading fx/1gib.bin"
    aws_s3 s3 cp --quiet "$FIXDIR/1gib.bin" "s3://$BUCKET/fx/1gib.bin"
  fi
}
ensure_ls10k() {
  local n
  n=$(python3 "$HELPER" list "$BUCKET" fx/ls10k/ | cut -d' ' -f1)
  if [ "$n" != 10000 ]; then
    log "creating 10000 objects under fx/ls10k/ (had $n)"
    printf 'putmany\t%s\t%s\t10000\n' "$(hex "$BUCKET")" "$(hex fx/ls10k/)" | python3 "$FIXTURE" batch
  fi
}

# ------------------------------------------------------------- mounts
LAST_PID=
# mount_s3linkfs MNT CONFIG [ARGS...]: a foreground mount in the background,
# waited for; its pid in LAST_PID
mount_s3linkfs() {
  local mnt=$1 cfg=$2; shift 2
  mkdir -p "$mnt"
  env RUST_LOG="${BENCH_RUST_LOG:-warn}" "$BIN" mount --config "$cfg" "s3://$BUCKET" "$mnt" \
    --foreground --log-file "$mnt.log" "$@" </dev/null &
  LAST_PID=$!
  track_mount "$mnt" "$LAST_PID"
  wait_mounted "$mnt" "$LAST_PID"
}
track_mount() { MOUNT_DIRS+=("$1"); MOUNT_PIDS+=("$2"); }
wait_mounted() {
  local mnt=$1 pid=$2 i
  for ((i = 0; i < 300; i++)); do
    mountpoint -q "$mnt" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "bench.sh: mount at $mnt exited; log:" >&2; cat "$mnt.log" >&2 2>/dev/null; exit 1; }
    sleep 0.05
  done
  echo "bench.sh: $mnt not mounted after 15 s" >&2; exit 1
}
# unmount MNT PID: fusermount3 -u, then wait (10 s) for that process to end
unmount() {
  local mnt=$1 pid=$2 i
  fusermount3 -u "$mnt" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; untrack "$pid"; return 0; }
    sleep 0.05
  done
  echo "bench.sh: pid $pid still running 10 s after unmounting $mnt; killing it" >&2
  kill "$pid" 2>/dev/null || true
  fusermount3 -uz "$mnt" 2>/dev/null || true
}
# untrack PID: forget a mount that has ended, so cleanup never signals a reused pid
untrack() {
  local i
  for i in "${!MOUNT_PIDS[@]}"; do
    [ "${MOUNT_PIDS[$i]}" != "$1" ] || unset 'MOUNT_PIDS[i]' 'MOUNT_DIRS[i]'
  done
}
hwm_mib() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

# The side-by-side tools, mounting the same bucket; "" when not installed
other_tools() {
  [ "${NO_SIDE_BY_SIDE:-0}" = 1 ] && return 0
  command -v s3fs >/dev/null && echo s3fs
  command -v rclone >/dev/null && echo rclone
  return 0
}
# mount_other TOOL MNT: pid in LAST_PID
mount_other() {
  local tool=$1 mnt=$2
  mkdir -p "$mnt"
  case $tool in
    s3fs)
      (umask 077; printf '%s:%s\n' "$ACCESS" "$SECRET" >"$WORK/s3fs.passwd")
      s3fs "$BUCKET" "$mnt" -f -o passwd_file="$WORK/s3fs.passwd" -o url="$ENDPOINT" \
        -o use_path_request_style -o endpoint="$REGION" -o sigv4 </dev/null >"$mnt.log" 2>&1 &
      ;;
    rclone)
      RCLONE_CONFIG_BENCHS3_TYPE=s3 RCLONE_CONFIG_BENCHS3_PROVIDER=Other \
      RCLONE_CONFIG_BENCHS3_ENDPOINT=$ENDPOINT RCLONE_CONFIG_BENCHS3_REGION=$REGION \
      RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID=$ACCESS RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY=$SECRET \
      RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE=true \
        rclone mount --config /dev/null "benchs3:$BUCKET" "$mnt" </dev/null >"$mnt.log" 2>&1 &
      ;;
  esac
  LAST_PID=$!
  track_mount "$mnt" "$LAST_PID"
  wait_mounted "$mnt" "$LAST_PID"
}

# time_s CMD...: runs CMD (output discarded), prints its wall time in seconds
time_s() {
  local t0 t1
  t0=$(now_ns)
  "$@" >/dev/null
  t1=$(now_ns)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", (b - a) / 1e9 }'
}
cat_file() { cat "$1" >/dev/null; }
ls_l() { ls -l "$1" >/dev/null; }

# measure NAME RUNS CMD...: hyperfine (or a timed loop) into $WORK/NAME.result
# as "mean_ms sd_ms runs median_ms"
measure() {
  local name=$1 runs=$2; shift 2
  if have_hyperfine; then
    hyperfine -N --style none --warmup 3 --runs "$runs" --export-json "$WORK/$name.json" \
      -- "$(printf '%q ' "$@")" >/dev/null 2>&1 ||
      hyperfine --style none --warmup 3 --runs "$runs" --export-json "$WORK/$name.json" \
        -- "$(printf '%q ' "$@")" >/dev/null
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("%.3f %.3f %d %.3f" % (r["mean"] * 1000, (r["stddev"] or 0) * 1000, len(r["times"]), r["median"] * 1000))
' "$WORK/$name.json" >"$WORK/$name.result"
  else
    local i t0 t1 times=()
    "$@" >/dev/null 2>&1 # warm-up
    for ((i = 0; i < runs; i++)); do
      t0=$(now_ns); "$@" >/dev/null 2>&1; t1=$(now_ns)
      times+=($((t1 - t0)))
    done
    local med; med=$(median "${times[@]}")
    printf '%s\n' "${times[@]}" | awk -v n="$runs" -v med="$med" '
      { s += $1; q += $1 * $1 }
      END { m = s / n; v = q / n - m * m; if (v < 0) v = 0; printf "%.3f %.3f %d %.3f\n", m / 1e6, sqrt(v) / 1e6, n, med / 1e6 }' \
      >"$WORK/$name.result"
  fi
}
result_median() { awk '{ print $4 }' "$WORK/$1.result"; }

# ================================================================= sections

bench_presign() {
  cargo build --release --quiet
  local endpoint=http://127.0.0.1:7480 ak=AKIDEXAMPLE sk=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
  local object=s3://bench-bucket/some/dir/report-2024.pdf
  (umask 077; printf '[profiles.default]\nendpoint = "%s"\naccess_key = "%s"\nsecret_key = "%s"\n' \
    "$endpoint" "$ak" "$sk" >"$WORK/presign.toml")
  (umask 077; printf '[default]\naccess_key = %s\nsecret_key = %s\nhost_base = 127.0.0.1:7480\nhost_bucket = 127.0.0.1:7480\nuse_https = False\nsignature_v2 = True\n' \
    "$ak" "$sk" >"$WORK/s3cmd-presign.cfg")
  log "presign: s3linkfs presign vs aws s3 presign and s3cmd signurl (signed locally)"
  "$BIN" presign --config "$WORK/presign.toml" "$object" --expires-in 1h >/dev/null
  measure p_v4 "$RUNS" "$BIN" presign --config "$WORK/presign.toml" "$object" --expires-in 1h
  measure p_v2 "$RUNS" "$BIN" presign --config "$WORK/presign.toml" "$object" --expires-in 1h --signature v2
  local v4 v2 ref
  v4=$(result_median p_v4); v2=$(result_median p_v2)
  if command -v s3cmd >/dev/null && s3cmd -c "$WORK/s3cmd-presign.cfg" signurl "$object" +3600 >/dev/null 2>&1; then
    measure p_s3cmd "$REF_RUNS" s3cmd -c "$WORK/s3cmd-presign.cfg" signurl "$object" +3600
    ref=$(result_median p_s3cmd)
    row "presign CLI v4, ms/call" "$(fmt "$v4" 2)" "$(fmt "$ref" 1) s3cmd signurl" "$(calc 'r/o' r="$ref" o="$v4")x" "<= 5 ms" "$(verdict "$v4" '<=' 5)"
    row "presign CLI v2, ms/call" "$(fmt "$v2" 2)" "$(fmt "$ref" 1) s3cmd signurl" "$(calc 'r/o' r="$ref" o="$v2")x" "<= 5 ms" "$(verdict "$v2" '<=' 5)"
  else
    row "presign CLI v4, ms/call" "$(fmt "$v4" 2)" "(no s3cmd)" - "<= 5 ms" "$(verdict "$v4" '<=' 5)"
  fi
  if command -v aws >/dev/null &&
    AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk AWS_DEFAULT_REGION=us-east-1 aws s3 presign --endpoint-url "$endpoint" "$object" --expires-in 3600 >/dev/null 2>&1; then
    AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk AWS_DEFAULT_REGION=us-east-1 \
      measure p_aws "$REF_RUNS" aws s3 presign --endpoint-url "$endpoint" "$object" --expires-in 3600
    ref=$(result_median p_aws)
    row "presign CLI v4 vs aws s3 presign" "$(fmt "$v4" 2)" "$(fmt "$ref" 1) aws presign" "$(calc 'r/o' r="$ref" o="$v4")x" "info" "info"
  fi
}

bench_reads() {
  server_setup
  ensure_big_object
  ensure_ls10k
  local url run mnt t
  url=$("$BIN" presign --config "$WORK/direct.toml" "s3://$BUCKET/fx/1gib.bin" --expires-in 1h)
  curl -sS -f -r 0-0 -o /dev/null "$url" || { echo "bench.sh: presigned URL refused" >&2; exit 1; }
  local curl_t=() cold=() warm=() hwm=0 h rr_ours=() rr_ref=() ls_cold=() ls_warm=() ls_ref=() n
  for ((run = 1; run <= BENCH_RUNS; run++)); do
    log "reads: run $run/$BENCH_RUNS: curl, then cold and warm cat through a fresh mount"
    curl_t+=("$(time_s curl -sS -f -o /dev/null "$url")")
    mnt=$WORK/m-read-$run
    mount_s3linkfs "$mnt" "$WORK/direct.toml" --cache-size "$CACHE_SIZE"
    [ "$(stat -c %s "$mnt/fx/1gib.bin")" = "$GIB" ] || { echo "bench.sh: wrong size in the mount" >&2; exit 1; }
    cold+=("$(time_s cat_file "$mnt/fx/1gib.bin")")
    warm+=("$(time_s cat_file "$mnt/fx/1gib.bin")")
    if [ "$run" = 1 ]; then
      cmp "$mnt/fx/1gib.bin" "$FIXDIR/1gib.bin" || { echo "bench.sh: mount read differs from the fixture" >&2; exit 1; }
    fi
    h=$(hwm_mib "$LAST_PID"); [ "$h" -le "$hwm" ] || hwm=$h
    unmount "$mnt" "$LAST_PID"

    log "reads: run $run/$BENCH_RUNS: $RAND_READS random 4 KiB reads (fresh mount) and ranged GETs"
    mnt=$WORK/m-rand-$run
    mount_s3linkfs "$mnt" "$WORK/direct.toml" --cache-size "$CACHE_SIZE"
    rr_ours+=("$(python3 "$HELPER" randread "$mnt/fx/1gib.bin" "$RAND_READS" "$run")")
    h=$(hwm_mib "$LAST_PID"); [ "$h" -le "$hwm" ] || hwm=$h
    unmount "$mnt" "$LAST_PID"
    rr_ref+=("$(python3 "$HELPER" rangeget "$url" "$GIB" "$RAND_READS" "$run")")

    log "reads: run $run/$BENCH_RUNS: ls -l of 10k objects, cold and warm, and a raw LIST"
    read -r n t < <(python3 "$HELPER" list "$BUCKET" fx/ls10k/)
    [ "$n" = 10000 ] || { echo "bench.sh: raw LIST found $n entries" >&2; exit 1; }
    ls_ref+=("$t")
    mnt=$WORK/m-ls-$run
    mount_s3linkfs "$mnt" "$WORK/direct.toml" --cache-size "$CACHE_SIZE"
    ls_cold+=("$(time_s ls_l "$mnt/fx/ls10k")")
    ls_warm+=("$(time_s ls_l "$mnt/fx/ls10k")")
    n=$(find "$mnt/fx/ls10k" -mindepth 1 | wc -l)
    [ "$n" = 10000 ] || { echo "bench.sh: the mount lists $n entries, not 10000" >&2; exit 1; }
    unmount "$mnt" "$LAST_PID"
  done
  local c o w
  c=$(median "${curl_t[@]}"); o=$(median "${cold[@]}"); w=$(median "${warm[@]}")
  row "read 1 GiB cold (x curl)" "$(mib_s "$o")" "$(mib_s "$c") curl" "$(calc 'c/o' c="$c" o="$o")" ">= 0.9" "$(verdict "$(calc 'c/o' c="$c" o="$o")" '>=' 0.9)"
  row "read 1 GiB warm, same mount (x curl)" "$(mib_s "$w")" "$(mib_s "$c") curl" "$(calc 'c/w' c="$c" w="$w")" ">= 3" "$(verdict "$(calc 'c/w' c="$c" w="$w")" '>=' 3)"
  o=$(median "${rr_ours[@]}"); c=$(median "${rr_ref[@]}")
  row "random 4 KiB reads/s (x ranged GET)" "$(fmt "$o" 0)/s" "$(fmt "$c" 0)/s GET" "$(calc 'o/c' o="$o" c="$c")" "info" "info"
  o=$(median "${ls_cold[@]}"); c=$(median "${ls_ref[@]}"); w=$(median "${ls_warm[@]}")
  row "ls -l 10k cold (time / raw LIST)" "$(fmt "$o") s" "$(fmt "$c") s LIST" "$(calc 'o/c' o="$o" c="$c")" "<= 1.2" "$(verdict "$(calc 'o/c' o="$o" c="$c")" '<=' 1.2)"
  row "ls -l 10k warm (time / raw LIST)" "$(fmt "$w") s" "$(fmt "$c") s LIST" "$(calc 'w/c' w="$w" c="$c")" "<= 0.05 s" "$(verdict "$w" '<=' 0.05)"
  local cache_mib
  cache_mib=$(numfmt --from=iec "$CACHE_SIZE" | awk '{ printf "%.0f", $1 / 1048576 }')
  row "peak RSS (VmHWM) vs --cache-size" "$hwm MiB" "$cache_mib MiB cache" "$(calc 'h/c' h="$hwm" c="$cache_mib")" "<= cache+100 MiB" "$(verdict "$hwm" '<=' $((cache_mib + 100)))"

  local tool
  for tool in $(other_tools); do
    local tc=() tw=() tl=() tlw=()
    for ((run = 1; run <= BENCH_RUNS; run++)); do
      log "reads: run $run/$BENCH_RUNS with $tool"
      mnt=$WORK/m-$tool-$run
      mount_other "$tool" "$mnt"
      if [ "$(stat -c %s "$mnt/fx/1gib.bin" 2>/dev/null || echo 0)" != "$GIB" ]; then
        log "$tool: fx/1gib.bin not visible; skipping $tool"; unmount "$mnt" "$LAST_PID"; continue 2
      fi
      tc+=("$(time_s cat_file "$mnt/fx/1gib.bin")")
      tw+=("$(time_s cat_file "$mnt/fx/1gib.bin")")
      unmount "$mnt" "$LAST_PID"
      mount_other "$tool" "$mnt"
      tl+=("$(time_s ls_l "$mnt/fx/ls10k")")
      tlw+=("$(time_s ls_l "$mnt/fx/ls10k")")
      unmount "$mnt" "$LAST_PID"
    done
    c=$(median "${curl_t[@]}"); o=$(median "${tc[@]}"); w=$(median "${tw[@]}")
    row "  $tool: read 1 GiB cold (x curl)" "$(mib_s "$o")" "$(mib_s "$c") curl" "$(calc 'c/o' c="$c" o="$o")" "info" "info"
    row "  $tool: read 1 GiB warm (x curl)" "$(mib_s "$w")" "$(mib_s "$c") curl" "$(calc 'c/w' c="$c" w="$w")" "info" "info"
    c=$(median "${ls_ref[@]}"); o=$(median "${tl[@]}"); w=$(median "${tlw[@]}")
    row "  $tool: ls -l 10k cold (/ LIST)" "$(fmt "$o") s" "$(fmt "$c") s LIST" "$(calc 'o/c' o="$o" c="$c")" "info" "info"
    row "  $tool: ls -l 10k warm (/ LIST)" "$(fmt "$w") s" "$(fmt "$c") s LIST" "$(calc 'w/c' w="$w" c="$c")" "info" "info"
  done
}

# start_proxy: the counting relay; its port in PROXY_PORT, its log in $WORK/proxy.log
start_proxy() {
  [ -z "$PROXY_PID" ] || return 0
  : >"$WORK/proxy.log"
  python3 "$HELPER" proxy "$WORK/proxy.port" "$WORK/proxy.log" &
  PROXY_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [ -s "$WORK/proxy.port" ] && break
    sleep 0.05
  done
  PROXY_PORT=$(cat "$WORK/proxy.port")
  write_config "$WORK/proxied.toml" "http://127.0.0.1:$PROXY_PORT"
  write_s3cmd_config "$WORK/s3cmd-proxied.cfg" "127.0.0.1:$PROXY_PORT"
}
requests_so_far() { wc -l <"$WORK/proxy.log"; }

bench_xattr() {
  server_setup
  start_proxy
  head -c 65536 /dev/urandom >"$WORK/report.pdf"
  python3 "$FIXTURE" put "$BUCKET" fx/xattr/report.pdf "$WORK/report.pdf" application/pdf
  python3 "$FIXTURE" put "$BUCKET" fx/xattr-ref/report.pdf "$WORK/report.pdf" application/pdf
  local m=$WORK/m-xattr p=$WORK/m-xattr-proxied mpid ppid f
  mount_s3linkfs "$m" "$WORK/direct.toml"; mpid=$LAST_PID
  mount_s3linkfs "$p" "$WORK/proxied.toml"; ppid=$LAST_PID
  f=$m/fx/xattr/report.pdf
  local u; u=$(getfattr --only-values -n user.s3.presign "$f")
  [ "$(curl -sS -f "$u" | cmp - "$WORK/report.pdf" && echo same)" = same ] ||
    { echo "bench.sh: the getfattr link does not fetch the object" >&2; exit 1; }

  log "xattr: getfattr user.s3.presign vs s3cmd signurl (hyperfine medians)"
  measure x_getfattr "$RUNS" getfattr --only-values -n user.s3.presign "$f"
  measure x_signurl "$REF_RUNS" s3cmd -c "$WORK/s3cmd-direct.cfg" signurl "s3://$BUCKET/fx/xattr/report.pdf" +604800
  local o r
  o=$(result_median x_getfattr); r=$(result_median x_signurl)
  row "getfattr presign, ms/call (speed-up)" "$(fmt "$o" 2) ms" "$(fmt "$r" 1) ms signurl" "$(calc 'r/o' r="$r" o="$o")x" ">= 40x" "$(verdict "$(calc 'r/o' r="$r" o="$o")" '>=' 40)"

  log "xattr: presigns per second in one process (${PRESIGN_SECONDS}s loops), requests counted by the relay"
  local fp=$p/fx/xattr/report.pdf rates=() boto=() c0 c1 run
  stat "$fp" >/dev/null
  getfattr -n user.s3.presign "$fp" >/dev/null
  c0=$(requests_so_far)
  for ((run = 1; run <= BENCH_RUNS; run++)); do
    rates+=("$(python3 "$HELPER" xattr-rate "$fp" user.s3.presign "$PRESIGN_SECONDS")")
  done
  c1=$(requests_so_far)
  [ "$c1" = "$c0" ] || log "xattr: requests during the presign loops (loops longer than the 5 s metadata TTL revalidate): $(tail -n $((c1 - c0)) "$WORK/proxy.log" | awk '{ print $1 " " $2 }' | sed -E 's/[?&](X-Amz|x-id)[^ ]*//' | sort | uniq -c | xargs)"
  for ((run = 1; run <= BENCH_RUNS; run++)); do
    boto+=("$(python3 "$HELPER" boto-presign-rate "$BUCKET" fx/xattr/report.pdf "$PRESIGN_SECONDS")")
  done
  local floor=()
  for ((run = 1; run <= BENCH_RUNS; run++)); do
    floor+=("$(python3 "$HELPER" xattr-rate "$fp" user.s3.etag "$PRESIGN_SECONDS")")
  done
  o=$(median "${rates[@]}"); r=$(median "${boto[@]}")
  row "presigns/s, one process (x botocore)" "$(fmt "$o" 0)/s" "$(fmt "$r" 0)/s botocore" "$(calc 'o/r' o="$o" r="$r")x" ">= 20000/s" "$(verdict "$o" '>=' 20000)"
  local total; total=$(calc 'o*s*n' o="$o" s="$PRESIGN_SECONDS" n="$BENCH_RUNS")
  o=$(median "${rates[@]}"); r=$(median "${floor[@]}")
  row "  presigns/s (x getxattr etag: FUSE floor)" "$(fmt "$o" 0)/s" "$(fmt "$r" 0)/s etag" "$(calc 'o/r' o="$o" r="$r")x" "info" "info"
  row "S3 requests during those presigns" "$((c1 - c0))" "~$(fmt "$total" 0) presigns" - "= 0" "$( [ $((c1 - c0)) = 0 ] && echo PASS || echo FAIL)"

  log "xattr: setfattr user.s3.content_disposition vs s3cmd modify and aws s3api copy-object"
  local st=() sm=() ac=() i v ref=s3://$BUCKET/fx/xattr-ref/report.pdf
  stat "$f" >/dev/null
  for ((i = 1; i <= SETFATTR_RUNS; i++)); do
    v="attachment; filename=\"bar-$((i % 2)).pdf\""
    st+=("$(time_s setfattr -n user.s3.content_disposition -v "$v" "$f")")
  done
  for ((i = 1; i <= SETFATTR_RUNS; i++)); do
    v="Content-Disposition: attachment; filename=\"bar-$((i % 2)).pdf\""
    sm+=("$(time_s s3cmd -c "$WORK/s3cmd-direct.cfg" --quiet modify --add-header="$v" "$ref")")
    ac+=("$(time_s aws_s3 s3api copy-object --bucket "$BUCKET" --key fx/xattr-ref/report.pdf \
      --copy-source "$BUCKET/fx/xattr-ref/report.pdf" --metadata-directive REPLACE \
      --content-type application/pdf --content-disposition "attachment; filename=\"bar-$((i % 2)).pdf\"")")
  done
  # the header really changed on the server
  curl -sS -f -o /dev/null -D - "$(getfattr --only-values -n user.s3.presign "$f")" |
    grep -qi '^content-disposition: attachment; filename="bar-' ||
    { echo "bench.sh: setfattr did not change Content-Disposition" >&2; exit 1; }

  # request counts through the relay: k calls on a file whose directory listing
  # is cached (ls just before; the spoof check then needs no request), and k
  # calls with only the file's own attributes cached (the spoof check HEADs the
  # named file)
  local fpx=$p/fx/xattr/report.pdf k=3 n_ours n_cold n_s3cmd n_aws
  ls -l "$p/fx/xattr" >/dev/null
  c0=$(requests_so_far)
  for ((i = 1; i <= k; i++)); do
    setfattr -n user.s3.content_disposition -v "attachment; filename=\"baz-$i.pdf\"" "$fpx"
  done
  c1=$(requests_so_far)
  n_ours=$(calc '(b-a)/k' a="$c0" b="$c1" k="$k")
  log "xattr: requests for $k setfattrs, listing cached: $(tail -n $((c1 - c0)) "$WORK/proxy.log" | awk '{ print $1 " " $2 }' | sed -E 's/[?&](X-Amz|x-id)[^ ]*//' | sort | uniq -c | xargs)"
  sleep 6 # past the 5 s metadata TTL: the listing and attributes expire
  stat "$fpx" >/dev/null
  c0=$(requests_so_far)
  for ((i = 1; i <= k; i++)); do
    setfattr -n user.s3.content_disposition -v "attachment; filename=\"qux-$i.pdf\"" "$fpx"
  done
  c1=$(requests_so_far)
  n_cold=$(calc '(b-a)/k' a="$c0" b="$c1" k="$k")
  log "xattr: requests for $k setfattrs, no cached listing: $(tail -n $((c1 - c0)) "$WORK/proxy.log" | awk '{ print $1 " " $2 }' | sed -E 's/[?&](X-Amz|x-id)[^ ]*//' | sort | uniq -c | xargs)"
  c0=$(requests_so_far)
  s3cmd -c "$WORK/s3cmd-proxied.cfg" --quiet modify --add-header="Content-Disposition: attachment; filename=\"q.pdf\"" "$ref" >/dev/null
  c1=$(requests_so_far); n_s3cmd=$((c1 - c0))
  c0=$(requests_so_far)
  aws --endpoint-url "http://127.0.0.1:$PROXY_PORT" s3api copy-object --bucket "$BUCKET" --key fx/xattr-ref/report.pdf \
    --copy-source "$BUCKET/fx/xattr-ref/report.pdf" --metadata-directive REPLACE \
    --content-type application/pdf --content-disposition 'attachment; filename="q.pdf"' >/dev/null
  c1=$(requests_so_far); n_aws=$((c1 - c0))

  o=$(median "${st[@]}"); r=$(median "${sm[@]}")
  local a; a=$(median "${ac[@]}")
  row "setfattr disposition, ms (/ s3cmd)" "$(calc 'o*1000' o="$o") ms" "$(calc 'r*1000' r="$r") ms s3cmd" "$(calc 'o/r' o="$o" r="$r")" "<= 0.5" "$(verdict "$(calc 'o/r' o="$o" r="$r")" '<=' 0.5)"
  row "setfattr disposition, ms (/ aws copy)" "$(calc 'o*1000' o="$o") ms" "$(calc 'a*1000' a="$a") ms aws" "$(calc 'o/a' o="$o" a="$a")" "info" "info"
  row "setfattr requests/call, listing cached" "$n_ours" "s3cmd $n_s3cmd, aws $n_aws" - "= 2" "$([ "$n_ours" = 2 ] && echo PASS || echo FAIL)"
  row "setfattr requests/call, no listing" "$n_cold" "s3cmd $n_s3cmd, aws $n_aws" - "= 2" "$([ "$n_cold" = 2 ] && echo PASS || echo FAIL)"
  unmount "$p" "$ppid"
  unmount "$m" "$mpid"
}

bench_writes() {
  server_setup
  local_big_file
  local small=$WORK/small i
  mkdir -p "$small"
  python3 - "$small" <<'EOF'
import os, random, sys
rng = random.Random(7)
for i in range(1000):
    with open(os.path.join(sys.argv[1], "s%04d.txt" % i), "wb") as f:
        f.write(rng.randbytes(rng.randrange(100, 4096)))
EOF
  delete_prefix w/
  local m=$WORK/m-write mpid run ours=() awst=() curlt=() sm_ours=() sm_aws=() sz
  mount_s3linkfs "$m" "$WORK/direct.toml"; mpid=$LAST_PID
  mkdir -p "$m/w"
  for ((run = 1; run <= BENCH_RUNS; run++)); do
    log "writes: run $run/$BENCH_RUNS: cp 1 GiB into the mount, aws s3 cp, curl PUT"
    ours+=("$(time_s cp "$FIXDIR/1gib.bin" "$m/w/mnt-$run.bin")")
    sz=$(object_size "w/mnt-$run.bin")
    [ "$sz" = "$GIB" ] || { echo "bench.sh: w/mnt-$run.bin has size '$sz' after cp" >&2; exit 1; }
    rm -f "$m/w/mnt-$run.bin"
    awst+=("$(time_s aws_s3 s3 cp --quiet "$FIXDIR/1gib.bin" "s3://$BUCKET/w/aws-$run.bin")")
    aws_s3 s3 rm --quiet "s3://$BUCKET/w/aws-$run.bin"
    curlt+=("$(time_s curl_s3 -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T "$FIXDIR/1gib.bin" "$ENDPOINT/$BUCKET/w/curl-$run.bin")")
    aws_s3 s3 rm --quiet "s3://$BUCKET/w/curl-$run.bin"

    log "writes: run $run/$BENCH_RUNS: 1000 small files, cp -r into the mount and aws s3 cp --recursive"
    sm_ours+=("$(time_s cp -r "$small" "$m/w/small-$run")")
    sm_aws+=("$(time_s aws_s3 s3 cp --quiet --recursive "$small" "s3://$BUCKET/w/small-aws-$run/")")
    sz=$(python3 "$HELPER" list "$BUCKET" "w/small-$run/" | cut -d' ' -f1)
    # 1000 files, plus the directory's marker object that mkdir wrote
    [ "$sz" = 1001 ] || { echo "bench.sh: w/small-$run/ holds $sz objects after cp -r (want 1000 + marker)" >&2; exit 1; }
    delete_prefix "w/small-$run/"; delete_prefix "w/small-aws-$run/"
  done
  unmount "$m" "$mpid"
  local o a c
  o=$(median "${ours[@]}"); a=$(median "${awst[@]}"); c=$(median "${curlt[@]}")
  row "write 1 GiB, cp (x aws s3 cp)" "$(mib_s "$o")" "$(mib_s "$a") aws cp" "$(calc 'a/o' a="$a" o="$o")" ">= 0.8" "$(verdict "$(calc 'a/o' a="$a" o="$o")" '>=' 0.8)"
  row "write 1 GiB, cp (x curl PUT)" "$(mib_s "$o")" "$(mib_s "$c") curl PUT" "$(calc 'c/o' c="$c" o="$o")" "info" "info"
  o=$(median "${sm_ours[@]}"); a=$(median "${sm_aws[@]}")
  row "1000 small files, s (x aws --recursive)" "$(fmt "$o" 2) s" "$(fmt "$a" 2) s aws cp -r" "$(calc 'a/o' a="$a" o="$o")" "info" "info"

  local tool
  for tool in $(other_tools); do
    local to=() ts=()
    for ((run = 1; run <= BENCH_RUNS; run++)); do
      log "writes: run $run/$BENCH_RUNS with $tool"
      delete_prefix w/ # s3linkfs' empty w/ marker reads as a file to s3fs
      m=$WORK/m-w-$tool-$run
      mount_other "$tool" "$m"
      mkdir -p "$m/w"
      to+=("$(time_s cp "$FIXDIR/1gib.bin" "$m/w/$tool-$run.bin")")
      ts+=("$(time_s cp -r "$small" "$m/w/small-$tool-$run")")
      unmount "$m" "$LAST_PID"
      sz=$(object_size "w/$tool-$run.bin")
      [ "$sz" = "$GIB" ] || log "$tool: w/$tool-$run.bin has size '$sz' after unmount"
      delete_prefix "w/$tool-$run.bin"; delete_prefix "w/small-$tool-$run/"
    done
    o=$(median "${to[@]}"); a=$(median "${awst[@]}")
    row "  $tool: write 1 GiB (x aws s3 cp)" "$(mib_s "$o")" "$(mib_s "$a") aws cp" "$(calc 'a/o' a="$a" o="$o")" "info" "info"
    o=$(median "${ts[@]}"); a=$(median "${sm_aws[@]}")
    row "  $tool: 1000 small files (x aws)" "$(fmt "$o" 2) s" "$(fmt "$a" 2) s aws cp -r" "$(calc 'a/o' a="$a" o="$o")" "info" "info"
  done
  delete_prefix w/
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${SECTIONS[@]}")
for s in "${want[@]}"; do
  declare -F "bench_$s" >/dev/null || { echo "bench.sh: unknown section $s (have: ${SECTIONS[*]})" >&2; exit 2; }
done
[ -x "$BIN" ] || cargo build --release --quiet
ENDPOINT=${ENDPOINT:-(none)}
for s in "${want[@]}"; do
  "bench_$s"
done
print_table
