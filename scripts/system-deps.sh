#!/usr/bin/env bash
# Install the Debian packages the local grid and the tests need, only when missing.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v unshare >/dev/null || need+=(util-linux)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v xrootd >/dev/null || need+=(xrootd-server)
command -v xrdcp >/dev/null || need+=(xrootd-client)
command -v voms-proxy-info >/dev/null || need+=(voms-clients)  # cross-checks our VOMS ACs (tests/unit/test_voms.py)
# the private single-node Slurm of the tests and `make run SUBMITTER=slurm` (scripts/localslurm.py); sbin may not be on PATH
command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || need+=(slurm-wlm)
command -v munged >/dev/null || [ -x /usr/sbin/munged ] || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run as root or install them)" >&2; exit 1
  fi
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
