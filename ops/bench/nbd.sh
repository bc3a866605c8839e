#!/usr/bin/env bash
# `bapp serve` (a thin volume of our pool) against `nbdkit file` (a raw file of the same size), with
# the same fio client (ioengine=nbd) on 127.0.0.1, in one run; prints each result and the ratio.
#
#   ops/bench/nbd.sh [--size SIZE] [--runtime SECONDS] [--prezero-data] [--only cow]
#   (defaults: --size 1G, --runtime 15)
#
# Setup: a pool (64 KiB blocks) with two volumes of SIZE, `vol` and `cow`, served by `bapp serve`;
#   a sparse raw file of SIZE served by `nbdkit -f --exit-with-parent --threads 16 file` (16 threads
#   is nbdkit's default and equals our 16 requests in flight per connection; page cache on for both).
#   Both are written once from start to end (1 MiB writes, QD 8; reported as "first write") so that
#   every block is provisioned before it is measured.
# Every write job ends with a FLUSH (fio end_fsync=1), counted in its time: our server commits every
#   second anyway (data fsync, then metadata), nbdkit would otherwise leave its writes in the page cache.
# Against nbdkit (time-based: RUNTIME s after a 2 s ramp; fio's default seed, so both servers see the
#   same offsets):
#   - sequential read and write, 1 MiB blocks, iodepth 8          goal: ours >= 0.9x nbdkit
#   - 4 KiB random read and random write, iodepth 32             goal: ours >= 0.7x nbdkit
# Write throughput after a snapshot, ours only (goal: >= 0.5x the same writes into the unshared `vol`):
#   stop serve, `bapp vol snapshot cow s1`, restart, warm up on `vol`, then one pass of sequential
#   1 MiB writes (QD 8) over all of `cow`, every one breaking sharing, and 4 such passes over `vol`.
#   Also, without a goal of its own (each write makes a whole new 64 KiB block; the script measures
#   the disk's direct sequential write rate and prints the ceiling that puts on it): then stop, `bapp vol snapshot cow s2`, restart, warm up, and one 4 KiB write (QD 32) into every
#   64 KiB block of `cow` in a random order (a fio iolog replay, so that every write breaks sharing;
#   a time-based run would soon be writing blocks it had already unshared), and that iolog 4 times
#   over on `vol` (only the first pass over `cow` can break sharing; `vol` has none to break).
# Peak RSS: VmHWM of each `bapp serve` process (and of nbdkit) just before it is stopped.
#
# --only cow runs only the write-after-a-snapshot part: no nbdkit and no comparison with it (`vol`
#   and `cow` are still written once first).
#
# --prezero-data writes zeroes over the pool's data file and the raw file before anything else (a
#   diagnosis aid: the data file is then fully allocated, as a dm-thin data device always is).
#
# Everything lives in one temp folder; every process the script starts is stopped by its PID, and the
# folder removed, on any exit. Needs fio, nbdkit and nbdinfo (ops/setup.sh installs them), and about
# 5x SIZE of free space under ${TMPDIR:-/tmp} (the pool's data file holds 4 volumes' worth of blocks).
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bapp="$root/ops/bapp"

size_arg=1G
runtime=15
prezero=0
only=""
while (($#)); do
  case $1 in
    --size) size_arg=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --prezero-data) prezero=1; shift ;;
    --only)
      [[ ${2:-} == cow ]] || { echo "nbd.sh: --only takes 'cow' (got '${2:-}')" >&2; exit 2; }
      only=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "nbd.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "nbd.sh: error: $*" >&2; exit 1; }
log() { printf '%s\n' "$*" >&2; }

for tool in fio nbdkit nbdinfo numfmt awk ss; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH (run ops/setup.sh)"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine"
size=$(numfmt --from=iec "${size_arg%[bB]}" 2>/dev/null) || die "--size: '$size_arg' is not a size such as 512M or 1G"
block=$((64 * 1024))
((size >= 16 * block && size % block == 0)) || die "--size must be a multiple of 64 KiB and at least 1 MiB (got $size bytes)"
[[ $runtime =~ ^[1-9][0-9]*$ ]] || die "--runtime must be a whole number of seconds (got '$runtime')"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bapp-nbd-bench.XXXXXX")
pids=() # every process we started and have not yet stopped

cleanup() {
  local pid i
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || continue
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # forget_pid PID: it has been stopped and waited for
  local keep=() p
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}

peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# ------------------------------------------------------------------ servers
pool="$tmp/pool"
serve_pid=""
serve_port=""
serve_peaks=()

start_serve() {
  : >"$tmp/serve.out"
  "$bapp" serve --pool "$pool" --listen 127.0.0.1:0 >"$tmp/serve.out" 2>>"$tmp/serve.err" &
  serve_pid=$!
  pids+=("$serve_pid")
  local i
  for ((i = 0; i < 300; i++)); do
    serve_port=$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/serve.out")
    [[ -n $serve_port ]] && return 0
    kill -0 "$serve_pid" 2>/dev/null || { cat "$tmp/serve.err" >&2; die "bapp serve exited before listening"; }
    sleep 0.1
  done
  die "bapp serve did not print 'listening' within 30 s"
}

stop_serve() { # SIGTERM = commit and exit; keeps the process's peak RSS
  serve_peaks+=("$(peak_rss_kib "$serve_pid")")
  kill -TERM "$serve_pid"
  local rc=0
  wait "$serve_pid" || rc=$?
  forget_pid "$serve_pid"
  ((rc == 0)) || { tail -5 "$tmp/serve.err" >&2; die "bapp serve exited with $rc on SIGTERM"; }
}

nbdkit_pid=""
nbdkit_port=""
start_nbdkit() { # a free port is picked at random; retried if another process takes it first
  local attempt i
  for ((attempt = 0; attempt < 10; attempt++)); do
    nbdkit_port=$((20000 + RANDOM % 40000))
    [[ -z $(ss -Htln "sport = :$nbdkit_port") ]] || continue
    nbdkit -f --exit-with-parent -i 127.0.0.1 -p "$nbdkit_port" --threads 16 \
      file file="$tmp/raw.img" 2>>"$tmp/nbdkit.err" &
    nbdkit_pid=$!
    pids+=("$nbdkit_pid")
    for ((i = 0; i < 100; i++)); do
      if nbdinfo --size "nbd://127.0.0.1:$nbdkit_port/" >/dev/null 2>&1; then return 0; fi
      kill -0 "$nbdkit_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -TERM "$nbdkit_pid" 2>/dev/null || true
    wait "$nbdkit_pid" 2>/dev/null || true
    forget_pid "$nbdkit_pid"
  done
  cat "$tmp/nbdkit.err" >&2
  die "could not start nbdkit"
}

nbdkit_uri() { echo "nbd://127.0.0.1:$nbdkit_port/"; }
ours_uri() { echo "nbd://127.0.0.1:$serve_port/$1"; }

# ------------------------------------------------------------------ fio
# fio_run NAME URI FIO-ARGS...: one fio job; sets bw_mib (MiB/s), iops and ms (runtime after ramp).
fio_run() {
  local name=$1 uri=$2; shift 2
  local out="$tmp/fio-$name.txt"
  sync # no dirty pages of the previous test are written back during this one
  # In the background and waited for, so that a signal to the script is handled at once.
  fio --name="$name" --ioengine=nbd --uri="$uri" --output-format=terse "$@" >"$out" 2>&1 &
  local fio_pid=$! rc=0
  pids+=("$fio_pid")
  wait "$fio_pid" || rc=$?
  forget_pid "$fio_pid"
  ((rc == 0)) || { cat "$out" >&2; die "fio job $name failed (exit $rc)"; }
  local line
  line=$(grep '^3;' "$out" | tail -1) || { cat "$out" >&2; die "fio job $name printed no result"; }
  # terse v3: 5 error; read: 7 bandwidth KiB/s, 8 IOPS, 9 runtime ms; write: 48, 49, 50
  read -r err bw_mib iops ms <<<"$(awk -F';' '{
      if ($7 + 0 > 0) printf "%s %.1f %.0f %s\n", $5, $7 / 1024, $8, $9
      else            printf "%s %.1f %.0f %s\n", $5, $48 / 1024, $49, $50 }' <<<"$line")"
  [[ $err == 0 ]] || { cat "$out" >&2; die "fio job $name reported error $err"; }
  log "   $(printf '%-34s %9s MiB/s %9s IOPS %7s ms' "$name" "$bw_mib" "$iops" "$ms")"
}

timed=(--time_based --runtime="$runtime" --ramp_time=2 --size="$size")
seq_read=(--rw=read --bs=1M --iodepth=8 "${timed[@]}")
seq_write=(--rw=write --bs=1M --iodepth=8 --end_fsync=1 "${timed[@]}")
rand_read=(--rw=randread --bs=4k --iodepth=32 --randrepeat=1 "${timed[@]}")
rand_write=(--rw=randwrite --bs=4k --iodepth=32 --randrepeat=1 --end_fsync=1 "${timed[@]}")
one_pass=(--rw=write --bs=1M --iodepth=8 --end_fsync=1 --size="$size")

# One 4 KiB write into each 64 KiB block, blocks in a random order (Fisher-Yates, fixed seed), the
# 4 KiB slot inside each block random too. %.0f: mawk's %d stops at 2^31.
iolog="$tmp/one-write-per-block.iolog"
awk -v n=$((size / block)) -v bs=$block 'BEGIN {
  srand(42)
  for (i = 0; i < n; i++) b[i] = i
  for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = b[i]; b[i] = b[j]; b[j] = t }
  print "fio version 2 iolog"; print "nbd add"; print "nbd open"
  for (i = 0; i < n; i++) printf "nbd write %.0f 4096\n", b[i] * bs + int(rand() * (bs / 4096)) * 4096
  print "nbd close" }' >"$iolog"
# The unshared baseline replays the same writes 4 times over (one pass would last a fraction of a second).
iolog4="$tmp/one-write-per-block-x4.iolog"
{ head -3 "$iolog"; for _ in 1 2 3 4; do grep '^nbd write ' "$iolog"; done; echo "nbd close"; } >"$iolog4"
one_per_block=(--replay_no_stall=1 --iodepth=32 --end_fsync=1 --size="$size")

warm_up() { # JIT and thread pool of a fresh serve process, on the unshared volume
  fio_run warm-up-4k "$(ours_uri vol)" --rw=randwrite --bs=4k --iodepth=32 --time_based --runtime=2 --size="$size"
  fio_run warm-up-1m "$(ours_uri vol)" --rw=write --bs=1M --iodepth=8 --size=$((size < 256 << 20 ? size : 256 << 20))
}

declare -A res # res[KEY]=value
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "0" }'; }

# ------------------------------------------------------------------ run
log "== nbd.sh: size $size bytes ($((size / block)) blocks of 64 KiB), runtime ${runtime} s, temp folder $tmp"
log "== building bapp (if needed)"
"$bapp" --help >/dev/null

"$bapp" pool create --pool "$pool" --data-size $((4 * size + 16 * block)) --block-size 64K >/dev/null
"$bapp" vol create --pool "$pool" vol --size "$size" >/dev/null
"$bapp" vol create --pool "$pool" cow --size "$size" >/dev/null
truncate -s "$size" "$tmp/raw.img"
if ((prezero)); then
  log "== --prezero-data: writing zeroes over the pool's data file and the raw file"
  dd if=/dev/zero of="$pool/data" bs=1M count=$(($(stat -c %s "$pool/data") >> 20)) conv=notrunc status=none
  dd if=/dev/zero of="$tmp/raw.img" bs=1M count=$((size >> 20)) conv=notrunc status=none
fi

if [[ -z $only ]]; then
  start_nbdkit
  start_serve
  log "== nbdkit $(nbdkit --version | awk '{ print $2 }') on port $nbdkit_port (pid $nbdkit_pid); bapp serve on port $serve_port (pid $serve_pid)"
else
  start_serve
  log "== --only $only: bapp serve on port $serve_port (pid $serve_pid)"
fi

log "== first write over each whole export (provisions every block)"
[[ -n $only ]] || { fio_run first-write-nbdkit "$(nbdkit_uri)" "${one_pass[@]}"; res[fill.nbdkit]=$bw_mib; }
fio_run first-write-ours "$(ours_uri vol)" "${one_pass[@]}"; res[fill.ours]=$bw_mib
fio_run first-write-ours-cow "$(ours_uri cow)" "${one_pass[@]}"

if [[ -z $only ]]; then
  log "== against nbdkit"
  fio_run seq-read-nbdkit "$(nbdkit_uri)" "${seq_read[@]}"; res[sr.nbdkit]=$bw_mib
  fio_run seq-read-ours "$(ours_uri vol)" "${seq_read[@]}"; res[sr.ours]=$bw_mib
  fio_run seq-write-nbdkit "$(nbdkit_uri)" "${seq_write[@]}"; res[sw.nbdkit]=$bw_mib
  fio_run seq-write-ours "$(ours_uri vol)" "${seq_write[@]}"; res[sw.ours]=$bw_mib
  fio_run rand-read-nbdkit "$(nbdkit_uri)" "${rand_read[@]}"; res[rr.nbdkit]=$iops
  fio_run rand-read-ours "$(ours_uri vol)" "${rand_read[@]}"; res[rr.ours]=$iops
  fio_run rand-write-nbdkit "$(nbdkit_uri)" "${rand_write[@]}"; res[rw.nbdkit]=$iops
  fio_run rand-write-ours "$(ours_uri vol)" "${rand_write[@]}"; res[rw.ours]=$iops
fi

log "== write after a snapshot: sequential"
stop_serve
"$bapp" vol snapshot --pool "$pool" cow s1 >/dev/null
start_serve
warm_up
fio_run seq-write-after-snapshot "$(ours_uri cow)" "${one_pass[@]}"; res[sws.snap]=$bw_mib
fio_run seq-write-unshared "$(ours_uri vol)" "${one_pass[@]}" --loops=4; res[sws.unshared]=$bw_mib

log "== write after a snapshot: 4K random, one write per 64 KiB block"
stop_serve
"$bapp" vol snapshot --pool "$pool" cow s2 >/dev/null
start_serve
warm_up
fio_run rand-write-after-snapshot "$(ours_uri cow)" --read_iolog="$iolog" "${one_per_block[@]}"; res[rws.snap]=$iops
fio_run rand-write-unshared "$(ours_uri vol)" --read_iolog="$iolog4" "${one_per_block[@]}"; res[rws.unshared]=$iops
stop_serve

# The 4 KiB row's ceiling on this disk, for any server of this format: each of those writes makes a
# new 64 KiB block, SIZE bytes in all, and they must all be on the disk when the closing flush
# returns. Writing SIZE bytes direct and sequentially (the best case) into the pool's file system:
log "== disk floor: $((size >> 20)) MiB written direct and sequentially next to the pool"
fio --name=floor --filename="$tmp/floor.dat" --size="$size" --bs=1M --iodepth=8 --ioengine=libaio --direct=1 \
  --rw=write --end_fsync=1 --output-format=json >"$tmp/floor.json" 2>"$tmp/floor.err" || die "fio (disk floor) failed: $(cat "$tmp/floor.err")"
res[floor.mib]=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["write"]; print(round(j["bw_bytes"] / 1048576, 1))' "$tmp/floor.json")
rm -f "$tmp/floor.dat"
res[floor.iops]=$(awk -v mib="${res[floor.mib]}" -v bs=$block 'BEGIN { printf "%.0f", mib * 1048576 / bs }')

nbdkit_peak=0
if [[ -z $only ]]; then
  nbdkit_peak=$(peak_rss_kib "$nbdkit_pid")
  kill -TERM "$nbdkit_pid"
  wait "$nbdkit_pid" 2>/dev/null || true
  forget_pid "$nbdkit_pid"
fi

# ------------------------------------------------------------------ summary
# Judged on the exact ratio, not the printed one (0.497 prints as 0.50 but misses 0.5).
met() { awk -v a="$1" -v b="$2" -v g="$3" 'BEGIN { print (b > 0 && a / b >= g + 0) ? "yes" : "**no**" }'; }
row() { # row TEST NBDKIT OURS UNIT GOAL
  local r
  r=$(ratio "$3" "$2")
  if [[ -n $5 ]]; then
    printf '| %s | %s %s | %s %s | %s× | ≥ %s× | %s |\n' "$1" "$2" "$4" "$3" "$4" "$r" "$5" "$(met "$3" "$2" "$5")"
  else
    printf '| %s | %s %s | %s %s | %s× | — | — |\n' "$1" "$2" "$4" "$3" "$4" "$r"
  fi
}
peak_max=0
for p in "${serve_peaks[@]}"; do if ((p > peak_max)); then peak_max=$p; fi; done

echo
# The commit measured ("+changes" when the work tree differs from it), for the figures' record.
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD -- src 2>/dev/null || commit="$commit+changes"
echo "commit $commit; size $((size >> 20)) MiB, runtime ${runtime} s + 2 s ramp, $(nproc) cores; nbdkit $(nbdkit --version | awk '{ print $2 }') file plugin, --threads 16; $(fio --version)$( ((prezero)) && echo '; --prezero-data')$([[ -n $only ]] && echo "; --only $only")"
echo
if [[ -z $only ]]; then
  echo "| test | nbdkit | ours | ours / nbdkit | goal | met |"
  echo "|---|---:|---:|---:|---:|---|"
  row "sequential read, 1 MiB, QD 8" "${res[sr.nbdkit]}" "${res[sr.ours]}" MiB/s 0.9
  row "sequential write, 1 MiB, QD 8" "${res[sw.nbdkit]}" "${res[sw.ours]}" MiB/s 0.9
  row "random read, 4 KiB, QD 32" "${res[rr.nbdkit]}" "${res[rr.ours]}" IOPS 0.7
  row "random write, 4 KiB, QD 32" "${res[rw.nbdkit]}" "${res[rw.ours]}" IOPS 0.7
  row "first write (provisioning), 1 MiB, QD 8, one pass" "${res[fill.nbdkit]}" "${res[fill.ours]}" MiB/s ""
  echo
fi
echo "| write after a snapshot (ours) | unshared volume | right after a snapshot | after / unshared | goal | met |"
echo "|---|---:|---:|---:|---:|---|"
row "sequential write, 1 MiB, QD 8, one pass" "${res[sws.unshared]}" "${res[sws.snap]}" MiB/s 0.5
row "random write, 4 KiB, QD 32, one per 64 KiB block" "${res[rws.unshared]}" "${res[rws.snap]}" IOPS ""
echo
echo "Both rows write whole new 64 KiB blocks, which must be on the disk by the closing flush; this disk writes ${res[floor.mib]} MiB/s direct and sequentially, so for any server of this format (copies free) the sequential row is at most $(ratio "${res[floor.mib]}" "${res[sws.unshared]}")× and the 4 KiB row at most ${res[floor.iops]} writes a second, $(ratio "${res[floor.iops]}" "${res[rws.unshared]}")× (that row has no goal of its own)."
echo
if [[ -z $only ]]; then
  echo "peak RSS (VmHWM): bapp serve $((serve_peaks[0] / 1024)) MiB in the nbdkit comparison, $((peak_max / 1024)) MiB at most over its ${#serve_peaks[@]} runs; nbdkit $((nbdkit_peak / 1024)) MiB"
else
  echo "peak RSS (VmHWM): bapp serve $((peak_max / 1024)) MiB at most over its ${#serve_peaks[@]} runs"
fi
