#!/usr/bin/env bash
# Cost of a volume's change set against its virtual size, at a fixed number of changed blocks.
#
#   ops/bench/changes.sh [--sizes 1G,64G,1T] [--changed 10000] [--repeat 5]
#
# For each size: a pool (64 KiB blocks) with one volume of that virtual size, a snapshot `base`
# (an era checkpoint), CHANGED distinct random blocks written (one 4 KiB write each), a snapshot
# `next`. Then, in-process (no process start-up in the figures):
#   - era, open+query: the pool opened afresh, "written since base's era" classified by `next`'s
#     mapping (what `bapp vol changes --since-era N --as-of next` computes);
#   - era, warm: the same query again on the open pool (median of REPEAT);
#   - diff: the changes-only btree diff of `next` against `base` through a metadata snapshot
#     (`--since-snapshot`), median of REPEAT.
# Goal (change tracking issue): flat across sizes, and the 1 TiB case under 100 ms.
# Needs about CHANGED x 64 KiB of free space per size under ${TMPDIR:-/tmp}; removes it after.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
case ${1:-} in -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bapp-changes-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$root/ops/bapp" vol bench-changes --dir "$tmp" "$@"
