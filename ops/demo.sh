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
