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

exec "$root/ops/bapp" demo --dir .demo "$@"
