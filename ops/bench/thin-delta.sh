#!/usr/bin/env bash
# thin_delta (thin-provisioning-tools 0.9.0) against `bapp thin delta`, on the same files, in one run.
#
#   ops/bench/thin-delta.sh [--mappings N] [--change-percent P] [--seed S] [--run-lengths "1 64"]
#                           [--restore-mappings N] [--runs R] [--no-cold]
#   (defaults: 4000000 mappings, 1% changed, seed 42, run lengths 1 and 64, 1000000 restore
#   mappings, best of 3)
#
# Pair 1 (once per run length L): a file made by `bapp thin bench-make` (device 0 with N sequential
#   mappings, snapshot 1, then P% of device 0's blocks rewritten at random places in runs of L
#   consecutive blocks; L=1 is uniformly random, the worst case: 1% of 4M blocks then touch ~72% of
#   the leaves; L=64 is 4 MiB extents at 64 KiB blocks, how filesystems write): thin_delta, our full
#   (byte-identical) mode and our --changes-only mode, diffing snapshot 1 against device 0. Our
#   changes-only run also reports its in-library time (--stats), i.e. without the dotnet start-up.
# Pair 2: a file made by thin_restore from generated XML (two devices, ~N/2 mappings each, no shared
#   subtrees since thin_restore builds each device's tree separately): thin_delta and our full mode
#   (and changes-only, which cannot skip anything there).
#
# Each time is the best of R runs (wall clock, the runs of the tools interleaved). Ours include the
# dotnet start-up, printed separately. "warm" runs read the metadata through the page cache;
# thin_delta 0.9.0 opens the file with O_DIRECT, so it always reads from the disk. "cold" runs evict
# the file from the page cache (posix_fadvise DONTNEED via dd iflag=nocache) before each of our runs.
#
# Checks on every run: our full output is byte-identical to thin_delta's (cmp), and the changes-only
# output equals thin_delta's output with its <same .../> lines removed.
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bapp="$root/ops/bapp"

mappings=4000000
change_percent=1
seed=42
restore_mappings=1000000
run_lengths="1 64"
runs=3
cold=1
while (($#)); do
  case $1 in
    --mappings) mappings=$2; shift 2 ;;
    --change-percent) change_percent=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --run-lengths) run_lengths=$2; shift 2 ;;
    --restore-mappings) restore_mappings=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --no-cold) cold=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "thin-delta.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

for tool in thin_delta thin_restore dd; do
  command -v "$tool" >/dev/null || { echo "thin-delta.sh: '$tool' is not on PATH (run ops/setup.sh)" >&2; exit 1; }
done
python=/usr/bin/python3
[[ -x $python ]] || python=$(command -v python3) || { echo "thin-delta.sh: python3 is needed to generate the XML" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bapp-thin-delta-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log() { printf '%s\n' "$*" >&2; }

# run OUT CMD...: CMD's stdout to OUT; on failure show its stderr and stop.
run() {
  local out=$1; shift
  if ! "$@" >"$out" 2>"$tmp/stderr"; then
    log "thin-delta.sh: failed: $*"
    cat "$tmp/stderr" >&2
    exit 1
  fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

declare -A best
# timed KEY OUT CMD...: runs CMD once, keeps the smallest wall time (ms) seen for KEY.
timed() {
  local key=$1 out=$2; shift 2
  local t0 t1
  t0=$(now_ms)
  run "$out" "$@"
  t1=$(now_ms)
  local dt=$((t1 - t0))
  if [[ -z ${best[$key]:-} || $dt -lt ${best[$key]} ]]; then best[$key]=$dt; fi
}

evict() { dd if="$1" iflag=nocache count=0 status=none; }
sec() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

same_removed() { grep -v '^ *<same ' "$1" || true; }

check_outputs() { # check_outputs THIN_DELTA_OUT OURS_FULL [OURS_CHANGES]
  if ! cmp -s "$1" "$2"; then
    log "thin-delta.sh: MISMATCH: our full output differs from thin_delta's:"
    cmp "$1" "$2" >&2 || true
    diff "$1" "$2" | head -20 >&2 || true
    exit 1
  fi
  if [[ -n ${3:-} ]] && ! cmp -s <(same_removed "$1") "$3"; then
    log "thin-delta.sh: MISMATCH: changes-only output differs from thin_delta's output without <same> lines:"
    diff <(same_removed "$1") "$3" | head -20 >&2 || true
    exit 1
  fi
}

# ------------------------------------------------------------------ build and start-up
log "== building bapp (if needed)"
run "$tmp/help.txt" "$bapp" thin delta --help
for ((i = 0; i < runs; i++)); do timed startup "$tmp/help.txt" "$bapp" thin delta --help; done

# ------------------------------------------------------------------ pair 1: bench-make files
declare -A libms libstat
for rl in $run_lengths; do
  made="$tmp/made$rl.meta"
  k="made$rl"
  log "== pair 1: bapp thin bench-make --mappings $mappings --change-percent $change_percent --run-length $rl --seed $seed"
  t0=$(now_ms)
  run /dev/null "$bapp" thin bench-make "$made" --mappings "$mappings" --change-percent "$change_percent" --run-length "$rl" --seed "$seed"
  log "   made in $(sec $(($(now_ms) - t0))) s; $(du -h --apparent-size "$made" | cut -f1) sparse, $(du -h "$made" | cut -f1) used"

  for ((i = 0; i < runs; i++)); do
    timed $k.td "$tmp/$k.td.xml" thin_delta --snap1 1 --snap2 0 "$made"
    timed $k.full "$tmp/$k.full.xml" "$bapp" thin delta --snap1 1 --snap2 0 "$made"
    timed $k.co "$tmp/$k.co.xml" "$bapp" thin delta --snap1 1 --snap2 0 --changes-only "$made"
    check_outputs "$tmp/$k.td.xml" "$tmp/$k.full.xml" "$tmp/$k.co.xml"
    "$bapp" thin delta --snap1 1 --snap2 0 --changes-only --stats "$made" 2>"$tmp/stats" >/dev/null
    ms=$(sed -n 's/^delta: \([0-9.]*\) ms in the library.*/\1/p' "$tmp/stats")
    if [[ -z ${libms[$k]:-} ]] || awk -v a="$ms" -v b="${libms[$k]}" 'BEGIN { exit !(a < b) }'; then libms[$k]=$ms; libstat[$k]=$(cat "$tmp/stats"); fi
    if ((cold)); then
      evict "$made"; timed $k.full.cold "$tmp/$k.full.xml" "$bapp" thin delta --snap1 1 --snap2 0 "$made"
      evict "$made"; timed $k.co.cold "$tmp/$k.co.xml" "$bapp" thin delta --snap1 1 --snap2 0 --changes-only "$made"
      check_outputs "$tmp/$k.td.xml" "$tmp/$k.full.xml" "$tmp/$k.co.xml"
    fi
  done
  log "   outputs identical: thin_delta = ours (full, $(wc -l <"$tmp/$k.td.xml") lines); changes-only = thin_delta minus <same> ($(same_removed "$tmp/$k.td.xml" | grep -c 'begin=' || true) ranges)"
  log "   changes-only, best run: ${libstat[$k]}"
done

# ------------------------------------------------------------------ pair 2: thin_restore file
restored="$tmp/restored.meta"
xml="$tmp/restore.xml"
log "== pair 2: thin_restore of generated XML, ~$restore_mappings mappings in two devices"
"$python" - "$restore_mappings" "$seed" >"$xml" <<'PY'
import random, sys

# Device 0: ~n/2 mappings in runs of 1-16 blocks with small gaps in the data device (so runs stay
# separate). Device 1: device 0 with 1% of its blocks moved to new data blocks, 0.1% unmapped and a
# few blocks appended: the pair a snapshot and its origin would be, but as two separate trees.
n = int(sys.argv[1]) // 2
rng = random.Random(int(sys.argv[2]))
dev0 = []
v = d = 0
while len(dev0) < n:
    run = rng.randint(1, 16)
    for i in range(run):
        dev0.append((v + i, d + i, 0))
    v += run + (1 if rng.random() < 0.05 else 0)
    d += run + rng.randint(0, 3)
dev0 = dev0[:n]
dev1 = list(dev0)
for i in rng.sample(range(n), n // 100):
    dev1[i] = (dev1[i][0], d, 1)
    d += 1
for i in sorted(rng.sample(range(n), n // 1000), reverse=True):
    del dev1[i]
top = dev0[-1][0] + 1
for i in range(100):
    dev1.append((top + 10 + i, d, 1))
    d += 1

out = sys.stdout
out.write(f'<superblock uuid="" time="1" transaction="2" flags="0" version="2" data_block_size="128" nr_data_blocks="{d}">\n')
for dev, maps, ctime in ((0, dev0, 0), (1, dev1, 1)):
    out.write(f'  <device dev_id="{dev}" mapped_blocks="{len(maps)}" transaction="{dev}" creation_time="{ctime}" snap_time="1">\n')
    i = 0
    while i < len(maps):
        v0, d0, t0 = maps[i]
        j = i + 1
        while j < len(maps) and maps[j] == (v0 + j - i, d0 + j - i, t0):
            j += 1
        if j - i == 1:
            out.write(f'    <single_mapping origin_block="{v0}" data_block="{d0}" time="{t0}"/>\n')
        else:
            out.write(f'    <range_mapping origin_begin="{v0}" data_begin="{d0}" length="{j - i}" time="{t0}"/>\n')
        i = j
    out.write('  </device>\n')
out.write('</superblock>\n')
PY
truncate -s $((restore_mappings * 256 > 64 << 20 ? restore_mappings * 256 : 64 << 20)) "$restored"
run /dev/null thin_restore -i "$xml" -o "$restored"
log "   restored: $(wc -l <"$xml") XML lines, $(du -h "$restored" | cut -f1) used"

for ((i = 0; i < runs; i++)); do
  timed rest.td "$tmp/rest.td.xml" thin_delta --snap1 1 --snap2 0 "$restored"
  timed rest.full "$tmp/rest.full.xml" "$bapp" thin delta --snap1 1 --snap2 0 "$restored"
  timed rest.co "$tmp/rest.co.xml" "$bapp" thin delta --snap1 1 --snap2 0 --changes-only "$restored"
  check_outputs "$tmp/rest.td.xml" "$tmp/rest.full.xml" "$tmp/rest.co.xml"
  if ((cold)); then
    evict "$restored"; timed rest.full.cold "$tmp/rest.full.xml" "$bapp" thin delta --snap1 1 --snap2 0 "$restored"
    evict "$restored"; timed rest.co.cold "$tmp/rest.co.xml" "$bapp" thin delta --snap1 1 --snap2 0 --changes-only "$restored"
    check_outputs "$tmp/rest.td.xml" "$tmp/rest.full.xml" "$tmp/rest.co.xml"
  fi
done
log "   outputs identical: thin_delta = ours (full, $(wc -l <"$tmp/rest.td.xml") lines); changes-only = thin_delta minus <same>"

# ------------------------------------------------------------------ summary
row() { # row LABEL KEY-PREFIX warm|cold
  local suffix=""
  [[ $3 == cold ]] && suffix=.cold
  local td=${best[$2.td]} full=${best[$2.full$suffix]} co=${best[$2.co$suffix]}
  printf '%-40s %-5s %10s %10s %12s %8s %10s\n' "$1" "$3" "$(sec "$td")" "$(sec "$full")" "$(sec "$co")" \
    "$(ratio "$td" "$full")" "$(ratio "$td" "$co")"
}
echo
echo "thin_delta --snap1 1 --snap2 0 FILE vs ops/bapp thin delta (best of $runs, seconds, wall clock; $(nproc) cores)"
echo "dotnet start-up (ops/bapp thin delta --help): $(sec "${best[startup]}") s, included in ours"
printf '%-40s %-5s %10s %10s %12s %8s %10s\n' "file" "cache" "thin_delta" "ours-full" "ours-changes" "td/full" "td/changes"
rest_label="thin_restore ~${restore_mappings} maps, 2 devs"
for rl in $run_lengths; do
  made_label="bench-make ${mappings} maps, ${change_percent}% in runs of $rl"
  row "$made_label" made$rl warm
  if ((cold)); then row "$made_label" made$rl cold; fi
done
row "$rest_label" rest warm
if ((cold)); then row "$rest_label" rest cold; fi
for rl in $run_lengths; do
  echo "changes-only in the library (no dotnet start-up), runs of $rl: ${libms[made$rl]} ms = $(ratio "${best[made$rl.td]}" "${libms[made$rl]}") faster than thin_delta"
done
echo "checks: full outputs byte-identical to thin_delta (cmp); changes-only = thin_delta without <same> lines: OK"
