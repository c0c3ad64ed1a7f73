#!/usr/bin/env bash
# Install Debian's slurm-wlm (slurmctld, slurmd, srun, sbatch) and munge, so that the
# SLURM tests (tests/test_tools/test_slurm.py) can start a one-node cluster on localhost.
#
#   tools/install_slurm.sh          idempotent; returns at once when slurm is installed
#
# Needs root and apt-get (Debian/Ubuntu). Anywhere else it says why and exits 0: the
# SLURM tests then skip, except under CI=true, where a skipped SLURM test fails.
# The daemons are not started here; the test fixture starts and stops them.
set -uo pipefail

say() { printf '\033[1m[install_slurm]\033[0m %s\n' "$*"; }

installed() {
  local tool
  for tool in slurmctld slurmd srun sbatch scancel scontrol munged; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || return 1
  done
}

if installed; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  say "slurm-wlm is not installed and this is not root: the SLURM tests will skip"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "slurm-wlm is not installed and there is no apt-get: the SLURM tests will skip"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 slurm-wlm)
say "installing slurm-wlm from the distribution's packages (about 10 s)"
if ! timeout 600 "${APT[@]}" >/tmp/install_slurm.log 2>&1; then
  say "install failed; refreshing the package lists (apt-get update) and retrying"
  timeout 300 apt-get update -q >>/tmp/install_slurm.log 2>&1
  if ! timeout 600 "${APT[@]}" >>/tmp/install_slurm.log 2>&1; then
    tail -20 /tmp/install_slurm.log >&2
    say "could not install slurm-wlm (log: /tmp/install_slurm.log): the SLURM tests will skip"
    exit 0
  fi
fi
if installed; then
  say "slurm-wlm installed"
else
  say "slurm-wlm installed but a tool is missing from PATH: the SLURM tests will skip"
fi
exit 0
