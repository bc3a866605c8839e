#!/usr/bin/env bash
# Make a fresh Debian 12 machine (with only the .NET SDK) ready to build and
# test BackupAppliance: install the system tools the tests use as oracles and
# peers, then restore and build the solution in Release.
#
# Idempotent: apt is touched only when a package is actually missing, so a
# re-run on a ready machine costs just the (incremental) dotnet build.
#
# Usage: ops/setup.sh [-q|--quiet]
#   --quiet  print nothing on success; on failure, dump the captured output
#            of the failing step to stderr.
set -euo pipefail

# Work from the repo root wherever we are called from (and through symlinks).
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$root"

quiet=0
for arg in "$@"; do
  case $arg in
    -q|--quiet) quiet=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

say() { [[ $quiet == 1 ]] || echo "setup.sh: $*"; }
die() { echo "setup.sh: error: $*" >&2; exit 1; }

# Run a step; in quiet mode keep its output in a temp file and show it (on
# stderr) only if the step fails, so callers such as ops/demo.sh stay clean.
step_log=$(mktemp)
trap 'rm -f "$step_log"' EXIT
run() {
  if [[ $quiet == 1 ]]; then
    if ! "$@" >"$step_log" 2>&1; then
      cat "$step_log" >&2
      die "'$*' failed"
    fi
  else
    "$@" || die "'$*' failed (exit $?)"
  fi
}

# Keep dotnet from printing banners/telemetry notices into our output, and
# from leaving MSBuild worker nodes behind that keep a caller's pipe open.
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
export MSBUILDDISABLENODEREUSE=1

# ---------------------------------------------------------------- packages --
packages=(
  thin-provisioning-tools   # thin_dump/thin_restore/thin_delta/... as oracles
  nats-server               # replication transport peer
  libnbd-bin                # nbdinfo/nbdcopy, NBD client side
  nbdfuse                   # mount an NBD export as a file (virtual on bookworm)
  fuse3
  qemu-utils                # qemu-img / qemu-nbd
  nbdkit                    # reference NBD server
  zstd libzstd1             # chunk compression
  libxxhash0 xxhash         # block hashes (XXH3-128), xxhsum as their oracle
  python3-msgpack           # cross-checking msgpack payloads
  e2fsprogs                 # mkfs.ext4 etc. for filesystem-level checks
  fio                       # I/O load generation
  util-linux                # losetup, blkdiscard, flock
  dmsetup                   # kernel (LVM) thin pools: metadata snapshot messages and status
  procps                    # pgrep/ps for daemon tests
  openssl                   # test CA and certificates for the NATS TLS tests
  iproute2                  # ss: the kernel's view of socket buffers in the NATS tests
)
command -v dpkg-query >/dev/null || die "dpkg-query not found: this script expects Debian 12 (bookworm)"

# Names provided by an installed package count as installed too: on bookworm
# 'nbdfuse' is a virtual package provided by libnbd-bin, and dpkg-query on the
# name alone would report it missing forever (forcing apt-get update on every run).
list_provided() {
  dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null |
    awk -F'|' '$1 ~ /^ii/ && $2 != "" {
      n = split($2, p, /, */)
      for (i = 1; i <= n; i++) { sub(/ .*/, "", p[i]); print p[i] } }'
}
provided=$(list_provided)

is_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]] && return 0
  grep -qxF -- "$1" <<<"$provided"
}

missing=()
for pkg in "${packages[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  say "installing missing packages: ${missing[*]}"
  sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || die "not root and sudo is not available; install as root: ${missing[*]}"
    sudo=(sudo)
  fi
  # Wait for a concurrent apt/dpkg (e.g. unattended-upgrades) instead of failing.
  apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
  run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=300
  run "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}"
  # Re-check: apt can 'succeed' without installing something (e.g. a virtual name).
  provided=$(list_provided)
  still=()
  for pkg in "${missing[@]}"; do is_installed "$pkg" || still+=("$pkg"); done
  ((${#still[@]} == 0)) || die "apt-get finished but these are still missing: ${still[*]}"
else
  say "all system packages present"
fi

# ------------------------------------------------------------------ dotnet --
command -v dotnet >/dev/null || die "the .NET SDK ('dotnet') is not on PATH; install .NET 10 SDK first"

say "dotnet restore"
run dotnet restore BackupAppliance.sln
say "dotnet build (Release)"
run dotnet build BackupAppliance.sln -c Release --no-restore -v q -nologo
say "ready"
