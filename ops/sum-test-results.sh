#!/usr/bin/env bash
# Sum the per-assembly summary lines that `dotnet test` (VSTest) prints, e.g.
#   Passed!  - Failed:     0, Passed:     4, Skipped:     0, Total:     4, Duration: 160 ms - X.Tests.dll (net10.0)
#   Failed!  - Failed:     1, Passed:     3, Skipped:     0, Total:     4, ...
# and print one line: "N passed, N failed" (+ ", N skipped" when N > 0).
# Kept separate from ops/test.sh so the arithmetic can be checked on a
# fabricated log without running any tests.
#
# Usage: ops/sum-test-results.sh [LOG]   (reads stdin when LOG is omitted or -)
# Exit:  0 = summaries found, none failed; 1 = some test failed;
#        2 = no summary line found at all (the run did not report, or ran nothing).
set -euo pipefail

log=${1:--}
if [[ $log != - && ! -r $log ]]; then
  echo "sum-test-results.sh: error: cannot read log '$log'" >&2
  exit 2
fi

# awk prints "passed failed skipped lines"; ANSI colour codes and CRs are
# stripped first in case the log came from a terminal or a Windows runner.
read -r passed failed skipped lines < <(
  cat -- "$log" | sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\r$//' | awk '
    /(Passed|Failed)! *- *Failed: *[0-9]+, *Passed: *[0-9]+, *Skipped: *[0-9]+, *Total: *[0-9]+/ {
      s = $0
      sub(/.*(Passed|Failed)! *- */, "", s)
      n = split(s, kv, /, */)
      for (i = 1; i <= n; i++) {
        split(kv[i], f, /: */)
        if (f[1] == "Failed")  fl += f[2]
        if (f[1] == "Passed")  ps += f[2]
        if (f[1] == "Skipped") sk += f[2]
      }
      found++
    }
    END { printf "%d %d %d %d\n", ps, fl, sk, found }'
)

if ((lines == 0)); then
  echo "sum-test-results.sh: error: no 'Passed!/Failed!  - Failed: ...' summary line found in the test output" >&2
fi

summary="$passed passed, $failed failed"
((skipped > 0)) && summary+=", $skipped skipped"
echo "$summary"

if ((lines == 0)); then exit 2; fi
if ((failed > 0)); then exit 1; fi
exit 0
