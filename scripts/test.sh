#!/usr/bin/env bash
# The project's test command (README, .ci/run):
#   0. scripts/install-deps.sh: installs what is missing (root for apt; garage is
#      built once, about 10 minutes); S3LINKFS_SKIP_INSTALL=1 skips this step;
#   1. cargo test for everything that needs no server (unit tests, the fake
#      client, config and CLI tests, doc tests);
#   2. for each real server (Ceph RGW, then Garage): use it if it already answers
#      on 127.0.0.1, else start it (and stop it again on exit), create the test
#      bucket with boto3, export the S3LINKFS_TEST_* variables and run every
#      tests/real_*.rs against it.
# Exits non-zero when anything failed. Without garage installed it skips Garage
# loudly (SKIP_GARAGE=1 also skips building it), except with CI=true, where that
# is a failure.
#
# Environment: S3LINKFS_TEST_SERVERS ("rgw garage"), RGW_PORT (7480),
# GARAGE_S3_PORT (3900), CARGO_TEST_ARGS (extra args after `--`, e.g. --nocapture).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SCRIPTS=$ROOT/scripts
# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"
LOGDIR=$(mktemp -d /tmp/s3linkfs-test.XXXXXX)
BUCKET=s3linkfs-test
SERVERS=${S3LINKFS_TEST_SERVERS:-rgw garage}
read -r -a EXTRA <<<"${CARGO_TEST_ARGS:-}"

STARTED=()        # servers this script started, stopped on exit
SUMMARY=()        # one line per step
LOGS=()           # cargo output of each step, in order
FAILED=0

say() { printf '\n=== %s\n' "$*"; }
cleanup() {
  local s
  for s in "${STARTED[@]}"; do
    echo "test.sh: stopping the $s it started"
    "$SCRIPTS/stop-$s.sh" >/dev/null 2>&1 || true
  done
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

have_garage() { command -v garage >/dev/null || [ -x "$HOME/.cargo/bin/garage" ]; }

make_bucket() {
  S3_ENDPOINT=$ENDPOINT S3_REGION=$REGION S3_ACCESS_KEY=$ACCESS S3_SECRET_KEY=$SECRET \
    "${PYTHON:-python3}" "$SCRIPTS/s3fixture.py" mkbucket "$BUCKET"
}

# run_cargo LABEL ARGS...: cargo test with output shown and kept; records the result
run_cargo() {
  local label=$1; shift
  local log="$LOGDIR/$(echo "$label" | tr -c 'a-zA-Z0-9\n' '_').log"
  cargo test "$@" -- "${EXTRA[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then SUMMARY+=("ok      $label"); else SUMMARY+=("FAILED  $label (exit $rc)"); FAILED=1; fi
  LOGS+=("$log")
}

# --- 0. dependencies -----------------------------------------------------------------------
if [ "${S3LINKFS_SKIP_INSTALL:-0}" != 1 ]; then
  say "dependencies (scripts/install-deps.sh)"
  "$SCRIPTS/install-deps.sh" || { echo "test.sh: installing dependencies failed" >&2; exit 1; }
fi

# --- 1. everything that needs no server ---------------------------------------------------
LOCAL_TARGETS=(--lib --bins)
REAL_TARGETS=()
for f in tests/*.rs; do
  name=$(basename "$f" .rs)
  case $name in
    real_*) REAL_TARGETS+=(--test "$name") ;;
    *) LOCAL_TARGETS+=(--test "$name") ;;
  esac
done
say "cargo test: unit, fake-client, config and CLI tests (no server)"
run_cargo "no-server tests" "${LOCAL_TARGETS[@]}"
say "cargo test --doc"
run_cargo "doc tests" --doc

# --- 2. each real server in turn ----------------------------------------------------------
if [ ${#REAL_TARGETS[@]} = 0 ]; then
  SUMMARY+=("none    real-server tests: no tests/real_*.rs")
fi
for srv in $SERVERS; do
  [ ${#REAL_TARGETS[@]} = 0 ] && break
  server_env "$srv" || { SUMMARY+=("FAILED  unknown server $srv"); FAILED=1; continue; }
  say "real-server tests against $srv ($ENDPOINT)"
  if answers; then
    echo "test.sh: reusing the $srv already answering at $ENDPOINT"
  else
    if [ "$srv" = garage ] && ! have_garage; then
      if [ "${CI:-}" = true ]; then
        echo "test.sh: garage is not installed and CI=true: FAILING (run scripts/install-deps.sh)" >&2
        SUMMARY+=("FAILED  $srv: garage not installed"); FAILED=1
      else
        printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
        echo "!!! SKIPPING GARAGE: the garage binary is not installed." >&2
        echo "!!! Run scripts/install-deps.sh (cargo install garage --locked, ~10 min)." >&2
        printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
        SUMMARY+=("SKIPPED $srv: garage not installed")
      fi
      continue
    fi
    echo "test.sh: starting $srv (log: $LOGDIR/start-$srv.log)"
    if "$SCRIPTS/start-$srv.sh" >"$LOGDIR/start-$srv.log" 2>&1; then
      STARTED+=("$srv")
    else
      tail -n 20 "$LOGDIR/start-$srv.log" >&2
      SUMMARY+=("FAILED  $srv: server did not start"); FAILED=1
      continue
    fi
  fi
  if ! make_bucket; then
    SUMMARY+=("FAILED  $srv: could not create bucket $BUCKET (a reused server may be full:"
              "        the RGW holds 4 GiB in memory; scripts/start-$srv.sh starts a fresh one)")
    FAILED=1
    continue
  fi
  S3LINKFS_TEST_ENDPOINT=$ENDPOINT S3LINKFS_TEST_REGION=$REGION \
  S3LINKFS_TEST_ACCESS_KEY=$ACCESS S3LINKFS_TEST_SECRET_KEY=$SECRET \
  S3LINKFS_TEST_BUCKET=$BUCKET S3LINKFS_TEST_SERVER=$srv \
    run_cargo "real-server tests on $srv" "${REAL_TARGETS[@]}"
done

cleanup   # stop what was started now, so the summary below is the last thing printed

# --- summary: every step, then cargo's own result lines -----------------------------------
say "summary (logs in $LOGDIR)"
printf '  %s\n' "${SUMMARY[@]}"
for log in "${LOGS[@]}"; do
  echo
  echo "$(basename "$log" .log):"
  # cargo's own result line, after the test binary it belongs to
  awk '/^ *Running /{name = ($2 == "unittests") ? $3 : $2} /^ *Doc-tests /{name="doc-tests"} /^test result:/{printf "  %-28s %s\n", name, $0; n++}
       END { if (!n) print "  (no test result: cargo failed before running tests)" }' "$log"
done
echo
cat "${LOGS[@]}" | grep -h '^test result:' | awk '
  { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  END { printf "total: %d passed, %d failed\n", p, f }'
if [ $FAILED != 0 ]; then echo "test.sh: FAILED" >&2; exit 1; fi
exit 0
