#!/usr/bin/env bash
# Test server: a minimal single-node Ceph (1 mon, 1 memstore OSD, no mgr) + radosgw on 127.0.0.1:7480.
# Everything lives under $RGW_BASE/data (default /tmp/ceph-rgw/data), wiped on every start.
# Requires Debian 12 packages ceph-mon ceph-osd radosgw ceph-common (16.2.x Pacific): scripts/install-deps.sh.
# Endpoint http://127.0.0.1:$RGW_PORT (7480), path style, any region, SigV2 and SigV4; monitor on $MON_PORT (6789).
# Stop with scripts/stop-rgw.sh (same RGW_BASE); it signals only the PIDs recorded here.
set -euo pipefail

BASE=${RGW_BASE:-/tmp/ceph-rgw}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=$BASE/data
CONF=$DATA/ceph.conf
RUN=$DATA/run
LOG=$DATA/log
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${MON_PORT:-6789}   # a second instance needs its own RGW_BASE, RGW_PORT and MON_PORT
ACCESS_KEY=${ACCESS_KEY:-AKIDEXAMPLE}
SECRET_KEY=${SECRET_KEY:-wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY}
S3_UID=${S3_UID:-testuser}
export CEPH_CONF=$CONF

T0=$(date +%s%N)
ts() { local d=$(( ($(date +%s%N) - T0) / 10000000 )); printf '[%3d.%02ds] %s\n' $((d/100)) $((d%100)) "$*"; }

for b in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool uuidgen curl; do
  command -v $b >/dev/null || { echo "missing $b: run scripts/install-deps.sh (as root)" >&2; exit 1; }
done

# 0. stop a previous instance started by us (by recorded PIDs), wipe data
if [ -x "$HERE/stop-rgw.sh" ]; then "$HERE/stop-rgw.sh" >/dev/null 2>&1 || true; fi
if ss -ltnH 2>/dev/null | awk '{print $4}' | grep -qE "^(127\.0\.0\.1|0\.0\.0\.0|\*|\[::\]):($MON_PORT|$RGW_PORT)\$"; then
  echo "port $MON_PORT or $RGW_PORT already in use" >&2; exit 1
fi
# died NAME: true if the daemon recorded in $RUN/NAME.pid is gone (zombie counts as gone)
died() { local p; p=$(cat "$RUN/$1.pid" 2>/dev/null) || return 1
  [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo X)" = Z ] || [ ! -e "/proc/$p" ]; }
OK=0
trap 'if [ $OK != 1 ] && [ "${KEEP_ON_FAIL:-0}" != 1 ]; then echo "start-rgw.sh FAILED; logs in $LOG; stopping what was started" >&2; "$HERE/stop-rgw.sh" >&2; fi' EXIT
rm -rf "$DATA"
mkdir -p "$DATA/mon" "$DATA/osd/ceph-0" "$RUN" "$LOG" "$DATA/rgw"

FSID=$(uuidgen)
cat > "$CONF" <<EOF
[global]
fsid = $FSID
mon_host = v1:127.0.0.1:$MON_PORT
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
public_network = 127.0.0.0/8
ms_bind_msgr2 = false
ms_bind_msgr1 = true
ms_bind_ipv6 = false
ms_bind_port_min = 6800
ms_bind_port_max = 7300
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
keyring = $DATA/\$cluster.\$name.keyring
run_dir = $RUN
admin_socket = $RUN/\$cluster-\$name.asok
pid_file = $RUN/\$name.pid
log_file = $LOG/\$cluster-\$name.log
log_to_stderr = false
err_to_stderr = true
log_to_file = true
crash_dir = $DATA/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
paxos_propose_interval = 0.05
paxos_min_wait = 0.01
mon_warn_on_pool_no_redundancy = false
mon_allow_pool_delete = true
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_warn_on_insecure_global_id_reclaim = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
auth_allow_insecure_global_id_reclaim = false

[mon]
mon_data = $DATA/mon/\$cluster-\$id
keyring = $DATA/mon/\$cluster-\$id/keyring
mon_cluster_log_file = $LOG/\$cluster.log
mon_data_avail_warn = 1
mon_data_avail_crit = 0

[osd]
osd_data = $DATA/osd/\$cluster-\$id
keyring = $DATA/osd/\$cluster-\$id/keyring
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_crush_initial_weight = 1
osd_crush_update_on_start = true
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2

[client.rgw.gw]
keyring = $DATA/rgw/keyring
rgw_data = $DATA/rgw
rgw_frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw_thread_pool_size = 64
rgw_zone = default
EOF

# 1. keys
ceph-authtool --create-keyring "$DATA/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring "$DATA/ceph.client.admin.keyring" --gen-key -n client.admin \
  --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$DATA/mon.keyring" --import-keyring "$DATA/ceph.client.admin.keyring" >/dev/null

# 2. monitor
monmaptool --create --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$DATA/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DATA/monmap" --keyring "$DATA/mon.keyring" 2>>"$LOG/daemon-stderr.log"
ceph-mon -c "$CONF" -i a 2>>"$LOG/daemon-stderr.log"  # daemonizes, writes $RUN/mon.a.pid
ts "mon started"
for i in $(seq 1 100); do ceph -s --connect-timeout 2 >/dev/null 2>&1 && break; sleep 0.2; done
ceph -s --connect-timeout 5 >/dev/null
ceph health mute MGR_DOWN >/dev/null 2>&1 || true   # no ceph-mgr on purpose; RGW does not need it
ts "mon answering"

# 3. OSD (memstore, no disk)
OSD_UUID=$(uuidgen)
OSD_SECRET=$(ceph-authtool --gen-print-key)
OSD_ID=$(echo "{\"cephx_secret\": \"$OSD_SECRET\"}" | ceph osd new "$OSD_UUID" -i -)
[ "$OSD_ID" = 0 ] || { echo "unexpected osd id $OSD_ID" >&2; exit 1; }
ceph-authtool --create-keyring "$DATA/osd/ceph-0/keyring" --name osd.0 --add-key "$OSD_SECRET" >/dev/null
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$LOG/osd-mkfs.out" 2>&1 \
  || { cat "$LOG/osd-mkfs.out" >&2; exit 1; }
ceph-osd -c "$CONF" -i 0 2>>"$LOG/daemon-stderr.log"  # daemonizes, writes $RUN/osd.0.pid
ts "osd started"
for i in $(seq 1 300); do
  ceph osd dump 2>/dev/null | grep -q '^osd.0 up' && break
  died osd.0 && { echo "ceph-osd died, see $LOG/ceph-osd.0.log" >&2; break; }; sleep 0.2
done
ceph osd dump | grep -q '^osd.0 up' || { echo "osd.0 did not come up" >&2; exit 1; }
ts "osd up"

# 4. radosgw
ceph auth get-or-create client.rgw.gw mon 'allow rw' osd 'allow rwx' mgr 'allow rw' \
  -o "$DATA/rgw/keyring" >/dev/null
radosgw -c "$CONF" -n client.rgw.gw ${RGW_EXTRA_ARGS:-} 2>>"$LOG/daemon-stderr.log"  # daemonizes, writes $RUN/client.rgw.gw.pid
ts "radosgw started"
for i in $(seq 1 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$RGW_PORT/" || true)
  [ "$code" = 200 ] && break
  died client.rgw.gw && { echo "radosgw died, see $LOG/ceph-client.rgw.gw.log" >&2; break; }; sleep 0.2
done
[ "$code" = 200 ] || { echo "radosgw not answering (last code $code)" >&2; exit 1; }
ts "radosgw answering"

# 5. S3 user
radosgw-admin -n client.admin user create --uid="$S3_UID" --display-name="Test User" \
  --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$DATA/user.json"
ts "user created"
# readiness = an authenticated (SigV4) ListBuckets with the new key returns 200
for i in $(seq 1 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --aws-sigv4 "aws:amz:us-east-1:s3" \
         -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
         --user "$ACCESS_KEY:$SECRET_KEY" "http://127.0.0.1:$RGW_PORT/" || true)
  [ "$code" = 200 ] && break; sleep 0.1
done
[ "$code" = 200 ] || { echo "signed ListBuckets failed (code $code)" >&2; exit 1; }
ts "signed ListBuckets OK"
echo "endpoint=http://127.0.0.1:$RGW_PORT access_key=$ACCESS_KEY"
echo "pids: mon=$(cat $RUN/mon.a.pid) osd=$(cat $RUN/osd.0.pid) rgw=$(cat $RUN/client.rgw.gw.pid)"
OK=1
echo "RGW ready"
