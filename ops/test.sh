#!/usr/bin/env bash
# Run the whole test suite: make the machine ready (ops/setup.sh installs the
# system tools and builds Release), run `dotnet test`, and finish with one
# line "N passed, N failed[, N skipped]" summed over all test assemblies.
#
# Usage: ops/test.sh [--long] [dotnet test args...]
#   --long   export BAPP_LONG_TESTS=1 so tests run their longer campaigns
#   others   passed through to `dotnet test`, e.g. --filter "FullyQualifiedName~Thin"
# Exit: dotnet test's exit code; non-zero also when no summary line was printed.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
root=$(cd "$here/.." && pwd)
cd "$root"

pass=()
for arg in "$@"; do
  case $arg in
    --long) export BAPP_LONG_TESTS=1 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) pass+=("$arg") ;;
  esac
done

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
# No lingering MSBuild nodes: they would hold the tee pipe below open.
export MSBUILDDISABLENODEREUSE=1

if ! "$here/setup.sh"; then
  echo "test.sh: error: ops/setup.sh failed (packages or build); no tests were run" >&2
  exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/bapp-test.XXXXXX")
trap 'rm -f "$log"' EXIT

# No debugger pipes or diagnostics socket per .NET process: the campaigns kill -9 a few hundred of
# them, and each would leave three files behind in /tmp.
export DOTNET_EnableDiagnostics=0

# Keep dotnet test's own exit code despite the pipe through tee.
set +e
dotnet test BackupAppliance.sln -c Release --no-build ${pass[@]+"${pass[@]}"} 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

# Prints the closing "N passed, N failed" line; must stay the last output.
set +e
"$here/sum-test-results.sh" "$log"
sum_rc=$?
set -e

if ((rc != 0)); then exit "$rc"; fi
# dotnet test said OK but reported no summary (nothing ran) or a failure: not a pass.
if ((sum_rc != 0)); then exit 1; fi
exit 0
