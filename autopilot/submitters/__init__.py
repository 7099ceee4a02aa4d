"""The batch systems AutoPilot submits to: one module each, named in SUBMITTERS.

Adding one: a module with a class that has `name` and the three methods of base.Submitter, and
a line here (docs/autopilot.md, "Adding a batch system"). Modules are imported on first use, so
a factory that never submits to HTCondor never imports its module.
"""

from __future__ import annotations

import importlib

from autopilot.submitters.base import Submitter

SUBMITTERS: dict[str, str] = {  # name → "module:class"
    "local": "autopilot.submitters.local:LocalSubmitter",
    "slurm": "autopilot.submitters.slurm:SlurmSubmitter",
    "condor": "autopilot.submitters.condor:CondorSubmitter",
}


def make_submitter(name: str) -> Submitter:
    if name not in SUBMITTERS:
        raise ValueError(f"unknown submitter {name!r}; known: {', '.join(SUBMITTERS)}")
    module, cls = SUBMITTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
