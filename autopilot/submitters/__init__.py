"""The batch systems AutoPilot submits to: one module each, named in SUBMITTERS.

Adding one: a module with a class that has `name` and the three methods of base.Submitter, and
a line here (docs/autopilot.md, "Adding a batch system").
"""

from __future__ import annotations

from collections.abc import Callable

from autopilot.submitters.base import Submitter


def _local() -> Submitter:
    from autopilot.submitters.local import LocalSubmitter

    return LocalSubmitter()


def _slurm() -> Submitter:
    from autopilot.submitters.slurm import SlurmSubmitter

    return SlurmSubmitter()


def _condor() -> Submitter:
    from autopilot.submitters.condor import CondorSubmitter

    return CondorSubmitter()


SUBMITTERS: dict[str, Callable[[], Submitter]] = {"local": _local, "slurm": _slurm, "condor": _condor}


def make_submitter(name: str) -> Submitter:
    if name not in SUBMITTERS:
        raise ValueError(f"unknown submitter {name!r}; known: {', '.join(SUBMITTERS)}")
    return SUBMITTERS[name]()
