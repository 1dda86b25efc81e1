#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian 12 machine; safe to run again (it only
# installs what is missing). Needs root for apt-get.
#
#   Debian:  fuse3 attr curl s3cmd ceph-mon ceph-osd radosgw ceph-common uuid-runtime iproute2 procps
#            (FUSE, getfattr/setfattr, the local Ceph RGW test server and the tools its scripts call)
#   PyPI:    boto3 (independent S3 client the integration tests use for fixtures), awscli (benchmark
#            reference, `aws s3 presign`)
#   cargo:   garage (the second test server), `cargo install garage --locked`, about 10 minutes
#
# SKIP_GARAGE=1 skips the garage build (the tests then skip garage loudly, or fail when CI=true).
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*"; }

# --- Debian packages ------------------------------------------------------------------------
DEB_PKGS=(fuse3 attr curl s3cmd ceph-mon ceph-osd radosgw ceph-common uuid-runtime iproute2 procps
          ca-certificates)
missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install-deps: need root to apt-get install: ${missing[*]}" >&2; exit 1; }
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages present"
fi

# --- Python modules -------------------------------------------------------------------------
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || { echo "install-deps: $PY not found" >&2; exit 1; }
pip_missing=()
"$PY" -c 'import boto3' 2>/dev/null || pip_missing+=(boto3)
command -v aws >/dev/null || pip_missing+=(awscli)
if [ ${#pip_missing[@]} -gt 0 ]; then
  log "pip install ${pip_missing[*]}"
  "$PY" -m pip install -q --disable-pip-version-check "${pip_missing[@]}"
  # pyenv exposes new console scripts only after a rehash
  if command -v pyenv >/dev/null; then pyenv rehash || true; fi
else
  log "boto3 and awscli present"
fi

# --- garage ---------------------------------------------------------------------------------
have_garage() { command -v garage >/dev/null || [ -x "$HOME/.cargo/bin/garage" ]; }
if [ "${SKIP_GARAGE:-0}" = 1 ]; then
  log "SKIP_GARAGE=1: not building garage"
elif have_garage; then
  log "garage present"
else
  # Another `cargo install garage` on this machine (started earlier by hand) would race with a
  # second one over the same cargo home: wait for it instead.
  if pgrep -f 'cargo install garage' >/dev/null; then
    log "a 'cargo install garage' is already running; waiting for it"
    while pgrep -f 'cargo install garage' >/dev/null; do sleep 5; done
  fi
  if ! have_garage; then
    log "cargo install garage --locked (about 10 minutes on 2 cores)"
    cargo install garage --locked --quiet
  fi
  have_garage || { echo "install-deps: garage still missing after cargo install" >&2; exit 1; }
fi
log "done"
