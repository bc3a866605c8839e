#!/usr/bin/env bash
# Main job end to end on the embedded default: make the machine ready, then
# let the CLI run the demo in a fresh working folder .demo/ at the repo root.
# Extra arguments are passed to `bapp demo`.
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$root"

# Quiet: only the demo's own output should be seen; setup shows its log on failure.
"$root/ops/setup.sh" --quiet || { echo "demo.sh: error: ops/setup.sh failed" >&2; exit 1; }

# Start from an empty working folder every time (it is in .gitignore).
rm -rf -- "$root/.demo"
mkdir -p -- "$root/.demo"

"$root/ops/bapp" demo --dir .demo "$@"

# The kernel's own userspace tools judge what we wrote.
meta="$root/.demo/metadata"
echo
echo "== thin_check (Debian thin-provisioning-tools) on our metadata"
thin_check "$meta"
echo "== our thin check"
"$root/ops/bapp" thin check "$meta"
echo "== thin_delta vs bapp thin delta (full, byte for byte)"
thin_delta --snap1 1 --snap2 0 "$meta" > "$root/.demo/delta.thin_delta.xml"
"$root/ops/bapp" thin delta --snap1 1 --snap2 0 "$meta" > "$root/.demo/delta.bapp.xml"
if cmp -s "$root/.demo/delta.thin_delta.xml" "$root/.demo/delta.bapp.xml"; then
  echo "identical ($(wc -l < "$root/.demo/delta.bapp.xml") lines)"
else
  echo "demo.sh: error: thin_delta and bapp thin delta differ" >&2
  exit 1
fi
echo "== thin_ls"
"$root/ops/bapp" thin ls "$meta"

# The data path: a pool with a volume imported from an image, a snapshot, served over NBD.
echo
echo "== a pool in .demo/pool, a volume from a 64 MiB image, a snapshot, served over NBD"
pool="$root/.demo/pool"
img="$root/.demo/image.raw"
head -c $((16 << 20)) /dev/urandom > "$img"
truncate -s 64M "$img"
"$root/ops/bapp" pool create --pool "$pool" --data-size 1G
"$root/ops/bapp" vol import --pool "$pool" disk --from "$img" 2>/dev/null
snap_out=$("$root/ops/bapp" vol snapshot --pool "$pool" disk disk-snap)
echo "$snap_out"
era=$(sed -n 's/.*era \([0-9]*\) and later.*/\1/p' <<<"$snap_out")
"$root/ops/bapp" serve --pool "$pool" --listen 127.0.0.1:0 > "$root/.demo/serve.out" 2> "$root/.demo/serve.log" &
serve_pid=$!
trap 'kill -TERM $serve_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^listening' "$root/.demo/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$root/.demo/serve.out")
[[ -n $port ]] || { echo "demo.sh: error: bapp serve did not start:" >&2; cat "$root/.demo/serve.log" >&2; exit 1; }
nbdinfo --list "nbd://127.0.0.1:$port" | grep -E 'export=|export-size|read-only'
echo "== write through NBD, then compare: the snapshot still holds the image"
qemu-io -f raw "nbd://127.0.0.1:$port/disk" -c "write -P 0x5a 0 1M" | head -1
qemu-img convert -f raw -O raw "nbd://127.0.0.1:$port/disk-snap" "$root/.demo/snap.raw"
cmp "$img" "$root/.demo/snap.raw" && echo "snapshot = original image (sha256 $(sha256sum < "$img" | cut -c1-16)...)"
echo "== what changed since the snapshot: by era $era (needs no old snapshot) and by snapshot diff; both must agree"
"$root/ops/bapp" vol changes --pool "$pool" disk --since-era "$era" | tee "$root/.demo/changes-era.txt"
"$root/ops/bapp" vol changes --pool "$pool" disk --since-snapshot disk-snap > "$root/.demo/changes-diff.txt"
cmp "$root/.demo/changes-era.txt" "$root/.demo/changes-diff.txt" && echo "change set by era = change set by snapshot diff"
echo "== allocation map of the volume (only provisioned blocks are data)"
nbdinfo --map "nbd://127.0.0.1:$port/disk"
kill -TERM $serve_pid
wait $serve_pid || true
trap - EXIT
thin_check "$pool/metadata" >/dev/null 2>&1 && echo "== pool closed; thin_check on its metadata: OK"
"$root/ops/bapp" pool status --pool "$pool"

# The main job: a full and an incremental backup over NATS into a receiver, a restore, a byte compare.
echo
echo "== backups over NATS: a local nats-server on loopback, an agent and a receiver with pools in .demo/"
demo="$root/.demo"
nats_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\n' "$nats_port" > "$demo/nats-server.conf"
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)
"$nats_bin" -c "$demo/nats-server.conf" > "$demo/nats.log" 2>&1 &
nats_pid=$!
pids=("$nats_pid")
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
cat > "$demo/agent.json" <<JSON
{
  "agent": "demo-host",
  "nats": { "urls": ["nats://127.0.0.1:$nats_port"] },
  "pool": "pool",
  "nbd_listen": "127.0.0.1:0",
  "volumes": [ { "name": "disk" } ]
}
JSON
cat > "$demo/receiver.json" <<JSON
{
  "nats": { "urls": ["nats://127.0.0.1:$nats_port"] },
  "pool": "replica",
  "pool_data_size": "1G"
}
JSON
wait_ready() { # FILE: wait until the daemon printed its ready line
  for _ in $(seq 300); do grep -q ' ready ' "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "demo.sh: error: daemon did not start:" >&2; cat "${1%.out}.log" >&2; exit 1
}
"$root/ops/bapp" receiver run --config "$demo/receiver.json" > "$demo/receiver.out" 2> "$demo/receiver.log" &
pids+=("$!")
"$root/ops/bapp" agent run --config "$demo/agent.json" > "$demo/agent.out" 2> "$demo/agent.log" &
pids+=("$!")
wait_ready "$demo/receiver.out"
wait_ready "$demo/agent.out"
nbd_port=$(sed -n 's/.* nbd=[^ ]*:\([0-9]*\) .*/\1/p' "$demo/agent.out")
echo "agent serves disk on nbd://127.0.0.1:$nbd_port/disk; receiver keeps points in .demo/replica"

echo "== full backup"
"$root/ops/bapp" backup now disk --config "$demo/agent.json"
qemu-img convert -f raw -O raw "nbd://127.0.0.1:$nbd_port/disk" "$demo/full-source.raw"

echo "== rewrite 2 MiB in 4 places through NBD, then an incremental backup"
head -c $((2 << 20)) /dev/urandom > "$demo/new.bin"
for off in 0 8M 20M 40M; do
  qemu-io -f raw "nbd://127.0.0.1:$nbd_port/disk" -c "write -s $demo/new.bin $off 512K" >/dev/null
done
qemu-img convert -f raw -O raw "nbd://127.0.0.1:$nbd_port/disk" "$demo/incr-source.raw"
"$root/ops/bapp" backup now disk --config "$demo/agent.json"

echo "== the receiver's points"
"$root/ops/bapp" backup list disk --config "$demo/receiver.json"

echo "== restore both points and compare byte for byte with the volume as it was"
first=$("$root/ops/bapp" backup list disk --config "$demo/receiver.json" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["points"][0]["point"])')
"$root/ops/bapp" restore "disk@$first" --to "$demo/full-restored.raw" --config "$demo/receiver.json"
"$root/ops/bapp" restore disk@latest --to "$demo/incr-restored.raw" --config "$demo/receiver.json"
cmp "$demo/full-source.raw" "$demo/full-restored.raw" && echo "full point = volume at the full backup (sha256 $(sha256sum < "$demo/full-restored.raw" | cut -c1-16)...)"
cmp "$demo/incr-source.raw" "$demo/incr-restored.raw" && echo "incremental point = volume at the incremental backup (sha256 $(sha256sum < "$demo/incr-restored.raw" | cut -c1-16)...)"
echo "restored image is sparse: $(du -k "$demo/incr-restored.raw" | cut -f1) KiB allocated of $(( $(stat -c %s "$demo/incr-restored.raw") / 1024 )) KiB"
cleanup
trap - EXIT
thin_check "$demo/replica/pool/metadata" >/dev/null 2>&1 && echo "== receiver stopped; thin_check on its pool's metadata: OK"
