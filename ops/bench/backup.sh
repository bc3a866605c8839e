#!/usr/bin/env bash
# Backups against their peers, in one run, on one machine:
#   - full backup (`bapp backup now`, agent → nats-server → receiver, all on loopback) against
#     `nbdcopy` of the same volume from the agent's NBD export to a local file   goal: >= 0.5x its rate
#     On freshly started daemons (their first backup, which also pays the runtime's warm-up:
#     jitting the hot paths), then of three more volumes holding the same files on the same, now
#     running, daemons (what a scheduled backup meets on an agent that has been up a while);
#     `nbdcopy` runs before each of the four, and the ratios are taken against the median of its
#     four times (the running daemons' ratio from the median of their three).
#   - incremental backup after 1% of the volume's blocks were rewritten, against `restic backup`
#     and `borg create` of the volume's image after the same change (both reread the whole image)
#                                                                               goal: >= 20x faster
#     Three rounds, each rewriting other blocks; the ratios are median against median.
#   - bytes on the wire against the changed bytes; peak RSS (VmHWM) of the agent and the receiver.
#
#   ops/bench/backup.sh [--size SIZE] [--tree DIR] [--zstd-level N] [--keep]
#   (defaults: --size 4G, --tree /usr/share: an ext4 filesystem of SIZE made with mkfs.ext4 -d DIR;
#   --zstd-level 1, the agent's zstd_level: 1 to 19, or -1 to -20 for zstd's fast levels)
#
# The volume: an ext4 image holding a copy of DIR (real files), imported into the agent's pool. The
# change: 1% of the pool's 64 KiB blocks, chosen at random over the whole volume, rewritten with
# random bytes through NBD (qemu-io), then flushed. restic and borg each get a full backup of the
# image before the changes (untimed warm-up of their repositories) and are timed on the image after
# each change; ours is timed on `bapp backup now` (snapshot, change set, send, receiver commit), and
# each incremental point is restored and compared with the image.
# Environment: receiver_extra=', "credit_frames": 64' adds options to the receiver's configuration.
# Installs restic and borgbackup with apt when missing. Needs about 4x SIZE of free space under
# ${TMPDIR:-/tmp}. Every process it starts is stopped by PID and the folder removed on exit
# (unless --keep).
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bapp="$root/ops/bapp"
# `backup now` is timed on the published CLI itself, as installed programs (restic, borg) are: the
# wrapper's check that the build is fresh walks the source tree (about 10 ms warm, 35 ms cold).
bapp_cli=(dotnet "$("$bapp" --published-dll)")
size=4G
tree=/usr/share
keep=0
zstd_level=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --size) size=$2; shift 2 ;;
    --tree) tree=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --zstd-level) zstd_level=$2; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "backup.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

need=()
command -v restic >/dev/null || need+=(restic)
command -v borg >/dev/null || need+=(borgbackup)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "backup.sh: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
for t in nbdcopy qemu-io mkfs.ext4 python3; do
  command -v "$t" >/dev/null || { echo "backup.sh: error: $t is missing (run ops/setup.sh)" >&2; exit 1; }
done
nats_bin=$(command -v nats-server || echo /usr/sbin/nats-server)

work=$(mktemp -d "${TMPDIR:-/tmp}/bapp-bench-backup.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ $keep == 1 ]] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Every timed step starts with the page cache dropped (written data synced first), where allowed.
drop_cache() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
hwm() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "== commit $commit; making a $size ext4 filesystem holding $tree"
truncate -s "$size" "$work/fs.img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -d "$tree" "$work/fs.img" 2>/dev/null || mkfs.ext4 -q -F -d "$tree" "$work/fs.img"
used=$(du -k "$work/fs.img" | cut -f1)
echo "filesystem image: $size, $((used / 1024)) MiB allocated"

running=(run1 run2 run3)
"$bapp" pool create --pool "$work/pool" --data-size "$(( $(stat -c %s "$work/fs.img") * 3 ))" >/dev/null
for v in disk "${running[@]}"; do
  "$bapp" vol import --pool "$work/pool" "$v" --from "$work/fs.img" 2>/dev/null
done
port=$(free_port)
printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\n' "$port" > "$work/nats.conf"
"$nats_bin" -c "$work/nats.conf" > "$work/nats.log" 2>&1 & pids+=("$!")
cat > "$work/agent.json" <<JSON
{ "agent": "bench", "nats": { "urls": ["nats://127.0.0.1:$port"] }, "pool": "pool",
  "nbd_listen": "127.0.0.1:0", "volumes": [ { "name": "disk" }, { "name": "run1" }, { "name": "run2" }, { "name": "run3" } ], "zstd_level": $zstd_level }
JSON
cat > "$work/receiver.json" <<JSON
{ "nats": { "urls": ["nats://127.0.0.1:$port"] }, "pool": "replica",
  "pool_data_size": "$(( $(stat -c %s "$work/fs.img") * 3 ))"${receiver_extra:-} }
JSON
"$bapp" receiver run --config "$work/receiver.json" > "$work/receiver.out" 2> "$work/receiver.log" & rpid=$!; pids+=("$rpid")
"$bapp" agent run --config "$work/agent.json" > "$work/agent.out" 2> "$work/agent.log" & apid=$!; pids+=("$apid")
for f in receiver agent; do
  for _ in $(seq 600); do grep -q ' ready ' "$work/$f.out" 2>/dev/null && break; sleep 0.1; done
  grep -q ' ready ' "$work/$f.out" || { echo "backup.sh: error: $f did not start" >&2; cat "$work/$f.log" >&2; exit 1; }
done
nbd=$(sed -n 's/.* nbd=\([^ ]*\) .*/\1/p' "$work/agent.out")
url="nbd://$nbd/disk"

# One nbdcopy of the volume to a local file, timed; appends to nbdcopy_s.
nbdcopy_s=()
time_nbdcopy() {
  drop_cache
  local t0 t1; t0=$(now); nbdcopy "$url" "$work/nbdcopy.raw"; t1=$(now)
  nbdcopy_s+=("$(secs "$t0" "$t1")"); rm -f "$work/nbdcopy.raw"
}
# One full backup of volume $1, timed; prints the seconds.
time_full() {
  drop_cache
  local t0 t1; t0=$(now); "${bapp_cli[@]}" backup now "$1" --config "$work/agent.json" --json > "$work/full-$1.json" 2>/dev/null; t1=$(now)
  secs "$t0" "$t1"
}
echo "== full backup vs nbdcopy of the same volume to a local file"
time_nbdcopy
full_s=$(time_full disk)
echo "== full backups of three more volumes with the same files, on the running daemons"
running_s=()
for v in "${running[@]}"; do
  time_nbdcopy
  running_s+=("$(time_full "$v")")
done

head -c $((64 << 10)) /dev/urandom > "$work/block.bin"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$work/restic" BORG_PASSPHRASE=bench BORG_REPO="$work/borg" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
restic init -q >/dev/null
borg init -e none >/dev/null 2>&1
mkdir -p "$work/src"
echo "== restic and borg: a first backup of the image before any change (untimed)"
ln -f "$work/fs.img" "$work/src/volume.img"
(cd "$work/src" && restic backup -q volume.img >/dev/null && borg create ::before volume.img)
# Three rounds, each: 1% of the volume's blocks rewritten (other blocks each round), then restic,
# borg and ours timed on the change, page cache dropped before each; the point is then restored and
# compared with the image after the change. Ratios are median against median.
restic_s=() borg_s=() incr_s=()
for round in 1 2 3; do
  echo "== round $round: rewriting 1% of the volume's 64 KiB blocks at random through NBD"
  python3 - "$work/fs.img" "$work/qemu-cmds" "$round" <<'PY'
import os, random, sys
size = os.path.getsize(sys.argv[1]); blocks = size // 65536
random.seed(7 * int(sys.argv[3]))
with open(sys.argv[2], "w") as f:
    for b in sorted(random.sample(range(blocks), max(1, blocks // 100))):
        f.write(f"write -P {random.randrange(1, 255)} {b * 65536} 512\n")
        f.write(f"write -s BLOCK {b * 65536 + 512} 65024\n")
    f.write("flush\n")
PY
  sed -i "s|BLOCK|$work/block.bin|" "$work/qemu-cmds"
  qemu-io -f raw "$url" < "$work/qemu-cmds" > /dev/null
  changed_blocks=$(grep -c '^write -s' "$work/qemu-cmds")
  # A new file each round (new inode and time), so neither peer can skip it as unchanged.
  rm -f "$work/src/volume.img" "$work/after.img"
  nbdcopy "$url" "$work/after.img"
  ln -f "$work/after.img" "$work/src/volume.img"
  drop_cache
  t0=$(now); (cd "$work/src" && restic backup -q volume.img >/dev/null); t1=$(now); restic_s+=("$(secs "$t0" "$t1")")
  drop_cache
  t0=$(now); (cd "$work/src" && borg create "::after$round" volume.img); t1=$(now); borg_s+=("$(secs "$t0" "$t1")")
  drop_cache
  t0=$(now); "${bapp_cli[@]}" backup now disk --config "$work/agent.json" --json > "$work/incr.json" 2>/dev/null; t1=$(now)
  incr_s+=("$(secs "$t0" "$t1")")
  "$bapp" restore disk@latest --to "$work/restored.img" --config "$work/receiver.json" >/dev/null 2>&1
  cmp "$work/after.img" "$work/restored.img" || { echo "backup.sh: error: the restored point differs from the volume after the change" >&2; exit 1; }
  echo "restored point = volume after the change"
  rm -f "$work/restored.img"
done
agent_mb=$(hwm "$apid"); receiver_mb=$(hwm "$rpid")

python3 - "$work" "$size ext4, zstd level $zstd_level, commit $commit" "${nbdcopy_s[*]}" "$full_s" "${running_s[*]}" "${restic_s[*]}" "${borg_s[*]}" "${incr_s[*]}" "$agent_mb" "$receiver_mb" "$changed_blocks" <<'PY'
import json, sys
w, size, nbdcopy_all, full_s, running_all, restic_all, borg_all, incr_all, agent_mb, receiver_mb, changed_blocks = sys.argv[1:]
import statistics
floats = lambda xs: [float(x) for x in xs.split()]
nbdcopy_all, running_all, restic_all, borg_all, incr_all = map(floats, (nbdcopy_all, running_all, restic_all, borg_all, incr_all))
nbdcopy_s, full2_s = statistics.median(nbdcopy_all), statistics.median(running_all)
restic_s, borg_s, incr_s = statistics.median(restic_all), statistics.median(borg_all), statistics.median(incr_all)
times = lambda xs: " ".join(f"{x:.2f}" for x in xs)
full = json.load(open(f"{w}/full-disk.json")); incr = json.load(open(f"{w}/incr.json"))
full_s = float(full_s)
mib = lambda b: b / 2**20
print(f"\nvolume {size}, {mib(full['data_bytes']):.0f} MiB of data")
print(f"full backup     bapp backup now {full_s:7.2f} s   nbdcopy {nbdcopy_s:7.2f} s   ratio (rate) {nbdcopy_s / full_s:.2f}x   (goal >= 0.5x)   daemons just started")
print(f"                bapp backup now {full2_s:7.2f} s   nbdcopy {nbdcopy_s:7.2f} s   ratio (rate) {nbdcopy_s / full2_s:.2f}x   (goal >= 0.5x)   daemons running")
print(f"                (medians; nbdcopy {times(nbdcopy_all)} s, running daemons {times(running_all)} s)")
print(f"                wire {mib(full['wire_bytes']):.1f} MiB for {mib(full['changed_bytes']):.1f} MiB changed ({mib(full['data_bytes']):.1f} MiB data)")
print(f"incremental     bapp backup now {incr_s:7.2f} s   restic {restic_s:7.2f} s ({restic_s / incr_s:.1f}x)   borg {borg_s:7.2f} s ({borg_s / incr_s:.1f}x)   (goal >= 20x)")
print(f"                (medians of 3 rounds; ours {times(incr_all)} s, restic {times(restic_all)} s, borg {times(borg_all)} s)")
print(f"                last round: {changed_blocks} blocks rewritten = {mib(incr['changed_bytes']):.1f} MiB changed; {mib(incr['data_bytes']):.1f} MiB sent as data; wire {mib(incr['wire_bytes']):.2f} MiB ({incr['wire_bytes'] / max(1, incr['changed_bytes']):.2f} x changed)")
print(f"peak RSS        agent {agent_mb} MiB, receiver {receiver_mb} MiB (VmHWM over the whole run)")
PY
