#!/usr/bin/env bash
# Benchmarks, each against reference tools measured in the same run, reported
# as ratios (figures go into notes, never into tests).
#
# Sections (run all by default, or name some): presign
#   presign  wall time of one `s3linkfs presign` invocation vs `aws s3 presign`
#            and `s3cmd signurl` for the same object. Target: <= 5 ms.
# Later sections (reads, ls, xattr) are added as bench_<name> functions and
# listed in SECTIONS.
#
# Uses hyperfine when installed (apt-get install hyperfine), else a timed loop.
# No server is needed for presign: all three tools sign locally.
# Environment: RUNS (default 200, s3linkfs), REF_RUNS (default 20, the slow references),
# NO_HYPERFINE=1 (use the loop even where hyperfine is installed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECTIONS=(presign)
WORK=$(mktemp -d /tmp/s3linkfs-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

RUNS=${RUNS:-200}
REF_RUNS=${REF_RUNS:-20}
have_hyperfine() { [ "${NO_HYPERFINE:-0}" != 1 ] && command -v hyperfine >/dev/null; }

# measure NAME RUNS CMD...: mean and standard deviation of wall time in ms, into
# $WORK/NAME.result as "mean sd runs"
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
print("%.3f %.3f %d" % (r["mean"] * 1000, (r["stddev"] or 0) * 1000, len(r["times"])))
' "$WORK/$name.json" >"$WORK/$name.result"
  else
    local i t0 t1 times=()
    "$@" >/dev/null 2>&1 # warm-up
    for ((i = 0; i < runs; i++)); do
      t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
      times+=($(( t1 - t0 )))
    done
    printf '%s\n' "${times[@]}" | awk -v n="$runs" '
      { s += $1; q += $1 * $1 }
      END { m = s / n; v = q / n - m * m; if (v < 0) v = 0; printf "%.3f %.3f %d\n", m / 1e6, sqrt(v) / 1e6, n }' \
      >"$WORK/$name.result"
  fi
}

# table TITLE BASE NAME...: one row per measured NAME, ratio against BASE
table() {
  local title=$1 base=$2; shift 2
  local bmean; read -r bmean _ _ <"$WORK/$base.result"
  echo
  echo "$title"
  printf '  %-28s %10s %10s %6s %9s\n' tool "mean ms" "sd ms" runs ratio
  local n mean sd runs
  for n in "$@"; do
    [ -f "$WORK/$n.result" ] || { printf '  %-28s %10s\n' "${LABEL[$n]}" "(not installed)"; continue; }
    read -r mean sd runs <"$WORK/$n.result"
    printf '  %-28s %10.2f %10.2f %6d %8.1fx\n' "${LABEL[$n]}" "$mean" "$sd" "$runs" \
      "$(awk -v a="$mean" -v b="$bmean" 'BEGIN { print a / b }')"
  done
}

declare -A LABEL

bench_presign() {
  cargo build --release --quiet
  local bin=$ROOT/target/release/s3linkfs
  local endpoint=http://127.0.0.1:7480 ak=AKIDEXAMPLE sk=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY
  local object=s3://bench-bucket/some/dir/report-2024.pdf
  (umask 077; printf '[profiles.default]\nendpoint = "%s"\naccess_key = "%s"\nsecret_key = "%s"\n' \
    "$endpoint" "$ak" "$sk" >"$WORK/config.toml")
  (umask 077; printf '[default]\naccess_key = %s\nsecret_key = %s\nhost_base = 127.0.0.1:7480\nhost_bucket = 127.0.0.1:7480\nuse_https = False\nsignature_v2 = True\n' \
    "$ak" "$sk" >"$WORK/s3cmd.cfg")
  export AWS_ACCESS_KEY_ID=$ak AWS_SECRET_ACCESS_KEY=$sk AWS_DEFAULT_REGION=us-east-1

  # the same link, made three ways (all sign locally; sanity-check each first)
  "$bin" presign --config "$WORK/config.toml" "$object" --expires-in 1h >/dev/null
  LABEL[s3linkfs_v4]="s3linkfs presign (v4)"
  measure s3linkfs_v4 "$RUNS" "$bin" presign --config "$WORK/config.toml" "$object" --expires-in 1h
  LABEL[s3linkfs_v2]="s3linkfs presign (v2)"
  measure s3linkfs_v2 "$RUNS" "$bin" presign --config "$WORK/config.toml" "$object" --expires-in 1h --signature v2
  LABEL[aws]="aws s3 presign (v4)"
  if command -v aws >/dev/null && aws s3 presign --endpoint-url "$endpoint" "$object" --expires-in 3600 >/dev/null 2>&1; then
    measure aws "$REF_RUNS" aws s3 presign --endpoint-url "$endpoint" "$object" --expires-in 3600
  fi
  LABEL[s3cmd]="s3cmd signurl (v2)"
  if command -v s3cmd >/dev/null && s3cmd -c "$WORK/s3cmd.cfg" signurl "$object" +3600 >/dev/null 2>&1; then
    measure s3cmd "$REF_RUNS" s3cmd -c "$WORK/s3cmd.cfg" signurl "$object" +3600
  fi
  table "presign: wall time of one invocation ($(have_hyperfine && echo hyperfine || echo "loop; fork+exec of bash's timer included"))" \
    s3linkfs_v4 s3linkfs_v4 s3linkfs_v2 aws s3cmd
  local mean; read -r mean _ _ <"$WORK/s3linkfs_v4.result"
  if awk -v m="$mean" 'BEGIN { exit !(m <= 5) }'; then
    echo "  target <= 5 ms per invocation: met (${mean} ms)"
  else
    echo "  target <= 5 ms per invocation: NOT met (${mean} ms)"
  fi
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=("${SECTIONS[@]}")
for s in "${want[@]}"; do
  declare -F "bench_$s" >/dev/null || { echo "bench.sh: unknown section $s (have: ${SECTIONS[*]})" >&2; exit 2; }
  "bench_$s"
done
