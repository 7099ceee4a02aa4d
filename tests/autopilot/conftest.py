"""AutoPilot fixtures: the real batch systems the submitters are tested against."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from scripts import localslurm

# ---- the local Slurm (scripts/localslurm.py), for the slurm submitter's tests


@pytest.fixture(scope="session")
def slurm():
    """A private single-node Slurm for the session: partition "debug", 4 CPUs (more than the
    machine may have: the node is what slurm.conf says), 8000 MB; `slurm.env` has SLURM_CONF."""
    if not localslurm.installed():
        pytest.fail("Slurm is not installed: run `bash scripts/system-deps.sh` as root (`make test` does) "
                    "or apt-get install -y --no-install-recommends slurm-wlm munge", pytrace=False)  # fmt: skip
    base = Path(tempfile.mkdtemp(prefix="slurm-", dir="/tmp"))  # short: munged's socket path is limited
    base.chmod(0o755)  # munged wants the directories above its socket searchable by all
    try:
        instance = localslurm.start(base, cpus=4)
    except localslurm.LocalSlurmError as exc:
        shutil.rmtree(base, ignore_errors=True)  # start() stopped what it had started
        pytest.fail(f"the local Slurm did not start: {exc}", pytrace=False)
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(base, ignore_errors=True)
