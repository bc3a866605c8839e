#!/usr/bin/env bash
# Publish + consume throughput of the NATS transport through a real nats-server on 127.0.0.1, with
# the socket tuning (4 MiB buffers, NoDelay) and without it (NATS.Client 0.8.0's own 32/64 KiB), at
# 64 KiB and 1 MiB payloads, in one run side by side.
#
#   ops/bench/nats.sh [--mib N] [--sizes 65536,1048576] [--ping-ms MS]
#   (defaults: --mib 64 per case; --ping-ms 500, the transport's default)
#
# With 500 ms pings (2 unanswered = dead), a link too slow for what is queued on it is declared dead:
# a case that fails says so. --ping-ms 120000 (the client's own default) measures such a link anyway.
#
# One connection publishes N MiB as fast as it can, another consumes; the time runs from the first
# publish to the last payload received. "lost" counts payloads missing or out of order (core NATS
# may drop for a slow consumer; it should be 0 here).
#
# The server (max_payload 8MB) lives in a temp folder; it is stopped by its PID, and the folder
# removed, on any exit. Needs nats-server (ops/setup.sh installs it).
set -euo pipefail

root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
mib=64
sizes=65536,1048576
ping_ms=500
while (($#)); do
  case $1 in
    --mib) mib=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --ping-ms) ping_ms=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "nats.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "nats.sh: error: $*" >&2; exit 1; }
server=$(command -v nats-server || true)
[[ -z $server && -x /usr/sbin/nats-server ]] && server=/usr/sbin/nats-server
[[ -n $server ]] || die "nats-server is not on PATH (run ops/setup.sh)"
[[ $mib =~ ^[1-9][0-9]*$ ]] || die "--mib: '$mib' is not a positive number"

work=$(mktemp -d "${TMPDIR:-/tmp}/bapp-nats-bench.XXXXXX")
server_pid=
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listen: 127.0.0.1:%s\nmax_payload: 8MB\n' "$port" >"$work/nats-server.conf"
"$server" -c "$work/nats-server.conf" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || die "nats-server exited: $(cat "$work/server.log")"
  sleep 0.1
done

echo "nats-server $("$server" --version | awk '{print $2}') on 127.0.0.1:$port; $mib MiB per case"
dotnet run -c Release --project "$root/tests/BackupAppliance.Benchmarks" -- \
  nats-throughput --url "nats://127.0.0.1:$port" --mib "$mib" --sizes "$sizes" --ping-ms "$ping_ms"
