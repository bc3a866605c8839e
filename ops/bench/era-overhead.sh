#!/usr/bin/env bash
# What era tracking costs on the write path: the same fio jobs (ioengine=nbd) against `bapp serve`
# with tracking on and with it suspended (`serve --suspend-tracking`, a measurement switch that marks
# every block as changed instead), in one run, alternating the order; prints both and the ratio.
#
#   ops/bench/era-overhead.sh [--size SIZE] [--runtime SECONDS]     (defaults: 1G, 15)
#
# Setup: a pool (64 KiB blocks) and one volume of SIZE written end to end once (so every block is
# provisioned and the measurement is of tracking, not provisioning). Each serve start begins a new
# era, so with tracking on every block's first write in the run commits an era mark (group commit).
# Jobs: 4 KiB random writes at iodepth 32, and 1 MiB sequential writes at iodepth 8; both time-based
# (RUNTIME s after a 2 s ramp), ending with a FLUSH counted in the time.
# After provisioning: `sync` and one uncounted warm-up run, so that neither side pays for the
# provisioning pass's writeback. Order on, off, off, on; each figure is the mean of its two runs.
# Goal (change tracking issue): tracking on >= 0.9x tracking off.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bapp="$root/ops/bapp"
size_arg=1G
runtime=15
while (($#)); do
  case $1 in
    --size) size_arg=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "era-overhead.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
die() { echo "era-overhead.sh: error: $*" >&2; exit 1; }
for tool in fio numfmt awk; do command -v "$tool" >/dev/null || die "'$tool' is not on PATH (run ops/setup.sh)"; done
size=$(numfmt --from=iec "${size_arg%[bB]}" 2>/dev/null) || die "--size: '$size_arg' is not a size such as 512M or 1G"
[[ $runtime =~ ^[1-9][0-9]*$ ]] || die "--runtime must be a whole number of seconds (got '$runtime')"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bapp-era-bench.XXXXXX")
serve_pid=
cleanup() {
  if [[ -n $serve_pid ]] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
pool="$tmp/pool"
"$bapp" pool create --pool "$pool" --data-size $((size + size / 4)) >/dev/null
"$bapp" vol create --pool "$pool" vol --size "$size" >/dev/null

start_serve() { # $1: extra flag
  "$bapp" serve --pool "$pool" --listen 127.0.0.1:0 ${1:+"$1"} >"$tmp/serve.out" 2>"$tmp/serve.err" &
  serve_pid=$!
  for _ in $(seq 300); do
    grep -q '^listening' "$tmp/serve.out" 2>/dev/null && break
    sleep 0.1
  done
  port=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$tmp/serve.out")
  [[ -n $port ]] || die "bapp serve did not start: $(cat "$tmp/serve.err")"
}
stop_serve() { kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=; }

fio_job() { # $1 rw, $2 bs, $3 iodepth, $4 extra
  fio --name=j --ioengine=nbd --uri="nbd://127.0.0.1:$port/vol" --rw="$1" --bs="$2" --iodepth="$3" \
    --size="$size" --end_fsync=1 --output-format=json $4 2>/dev/null
}
# fio's JSON: jobs[0].write.iops and .bw (KiB/s)
field() { /usr/bin/python3 -c 'import json,sys; t=sys.stdin.read(); w=json.loads(t[t.index("{"):])["jobs"][0]["write"]; print(round(w["iops"]) if sys.argv[1]=="iops" else round(w["bw"]/1024))' "$1"; }
iops() { fio_job randwrite 4k 32 "--time_based --runtime=$runtime --ramp_time=2" | field iops; }
mibs() { fio_job write 1m 8 "--time_based --runtime=$runtime --ramp_time=2" | field mibs; }

start_serve ""
fio_job write 1m 8 "" >/dev/null   # provision every block once
stop_serve
sync                               # no writeback of the provisioning pass during the first measurement
start_serve --suspend-tracking; iops >/dev/null; stop_serve   # a warm-up run, not counted

declare -A r
for order in on off off on; do
  flag=""; [[ $order == off ]] && flag=--suspend-tracking
  start_serve "$flag"; r[$order.iops]+="$(iops) "; stop_serve
  start_serve "$flag"; r[$order.mibs]+="$(mibs) "; stop_serve
done
avg() { awk '{s=0; for(i=1;i<=NF;i++) s+=$i; printf "%.0f", s/NF}' <<<"$1"; }
printf '%-34s %14s %14s %8s\n' test "tracking off" "tracking on" "on/off"
for k in iops mibs; do
  on=$(avg "${r[on.$k]}"); off=$(avg "${r[off.$k]}")
  label="random write 4 KiB QD32 (IOPS)"; [[ $k == mibs ]] && label="sequential write 1 MiB QD8 (MiB/s)"
  printf '%-34s %14s %14s %7.2fx   (runs: off %s/ on %s)\n' "$label" "$off" "$on" "$(awk -v a="$on" -v b="$off" 'BEGIN{print a/b}')" "${r[off.$k]}" "${r[on.$k]}"
done
