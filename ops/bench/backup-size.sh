#!/usr/bin/env bash
# Incremental backups of the same small change against the volume's virtual size.
#
#   ops/bench/backup-size.sh [--sizes 4G,1T] [--runs 3] [--change 4M] [--dense]
#
# For each size: an agent pool with one empty volume of that size, a receiver with its own pool,
# nats-server on loopback (as ops/bench/backup.sh). A first backup (full: the volume is unmapped
# but for CHANGE bytes), then RUNS incrementals, each after CHANGE bytes written through NBD with
# qemu-io. Prints per size: the wall time of `bapp backup now` (published CLI), the agent's own
# time for the backup, and how much the receiver's folder grew per incremental point (du).
# A backup that costs what changed stays flat across sizes; what grows shows what does not.
# --dense: before the full backup, one 64 KiB block is written every 8 MiB over the whole volume, so
# that every 4 KiB page of the block hash tables holds data, as for a fully written volume, with
# 1/128 of its data (8 GiB at 1 TiB; written through NBD, which takes a while).
# Needs little space for the data, but the block hash tables are files of 32 bytes per 64 KiB
# block of the volume (512 MiB at 1 TiB) on each side and per point: about (RUNS + 2) x that.
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bapp="$root/ops/bapp"
sizes=4G,1T
runs=3
change=4M
dense=0
while (($#)); do
  case $1 in
    --sizes) sizes=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --change) change=$2; shift 2 ;;
    --dense) dense=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "backup-size.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for t in qemu-io python3; do
  command -v "$t" >/dev/null || { echo "backup-size.sh: error: $t is missing (run ops/setup.sh)" >&2; exit 1; }
done
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
cli=(dotnet "$("$bapp" --published-dll)")

work=$(mktemp -d "${TMPDIR:-/tmp}/bapp-bench-size.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() {
  for _ in $(seq 600); do grep -q ' ready ' "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "backup-size.sh: error: no ready line in $1" >&2; cat "${1%.out}.log" >&2; exit 1
}

echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown); change $change per incremental$( ((dense)) && echo '; dense: a 64 KiB block every 8 MiB')"
echo "| virtual size | incremental, wall (CLI) | agent's time | receiver's folder per point |"
echo "|---:|---:|---:|---:|"
for size in ${sizes//,/ }; do
  w="$work/$size"
  mkdir -p "$w"
  "$bapp" pool create --pool "$w/pool" --data-size 64G >/dev/null
  "$bapp" vol create --pool "$w/pool" disk --size "$size" >/dev/null
  port=$(free_port)
  printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\n' "$port" > "$w/nats.conf"
  "$nats_bin" -c "$w/nats.conf" > "$w/nats.log" 2>&1 & npid=$!; pids+=("$npid")
  cat > "$w/agent.json" <<JSON
{ "agent": "bench", "nats": { "urls": ["nats://127.0.0.1:$port"] }, "pool": "pool",
  "nbd_listen": "127.0.0.1:0", "volumes": [ { "name": "disk" } ], "zstd_level": 1 }
JSON
  cat > "$w/receiver.json" <<JSON
{ "nats": { "urls": ["nats://127.0.0.1:$port"] }, "pool": "replica", "pool_data_size": "64G" }
JSON
  "$bapp" receiver run --config "$w/receiver.json" > "$w/receiver.out" 2> "$w/receiver.log" & rpid=$!; pids+=("$rpid")
  "$bapp" agent run --config "$w/agent.json" > "$w/agent.out" 2> "$w/agent.log" & apid=$!; pids+=("$apid")
  ready "$w/receiver.out"; ready "$w/agent.out"
  nbd=$(sed -n 's/.* nbd=\([^ ]*\) .*/\1/p' "$w/agent.out")
  walls=(); agents=(); growth=()
  if ((dense)); then
    bytes=$(numfmt --from=iec "$size")
    python3 -c "
import sys
for at in range(0, $bytes, 8 << 20):
    sys.stdout.write(f'write -P {(at >> 23) % 255 + 1} {at} 64k\n')
" | qemu-io -f raw "nbd://$nbd/disk" > /dev/null
  fi
  for i in $(seq 0 "$runs"); do
    qemu-io -f raw -c "write -P $((i + 1)) $((i * 7))M $change" "nbd://$nbd/disk" > /dev/null
    before=$(du -sk "$w/replica" | cut -f1)
    t0=$(now)
    "${cli[@]}" backup now disk --config "$w/agent.json" --json > "$w/backup.json" 2>/dev/null
    t1=$(now)
    after=$(du -sk "$w/replica" | cut -f1)
    ((i == 0)) && continue # the first backup is the full one
    walls+=("$(python3 -c "print(f'{$t1 - $t0:.2f}')")")
    agents+=("$(python3 -c "import json; print(f'{json.load(open(\"$w/backup.json\"))[\"seconds\"]:.2f}')")")
    growth+=("$(( (after - before) / 1024 ))")
  done
  echo "| $size | ${walls[*]} s | ${agents[*]} s | ${growth[*]} MiB |"
  kill -TERM "$apid" "$rpid"; wait "$apid" "$rpid" 2>/dev/null || true
  kill -TERM "$npid"; wait "$npid" 2>/dev/null || true
  rm -rf "$w"
done
