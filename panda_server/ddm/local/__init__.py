"""The built-in asynchronous DDM backend (docs/ddm.md).

    tables.py     the catalog in the PanDA database's `ddm` schema (migration 0005)
    catalog.py    LocalDDM: the DDM verbs of panda_server/ddm/interface.py, one transaction each
    store.py      catalog reads/writes on a caller's connection
    rses.py       the RSE map from schedconfig, replica URLs (the pilot's Rucio paths)
    claims.py     the agent's claim step (subscriptions, leased transfers)
    transfer.py   one verified copy with the pilot's copy tools (cp, xrdcp)
    agent.py      run_once for `panda-daemon ddm`: copy, verify, record, complete
    callbacks.py  the datasetCompleted callbacks over mTLS, with retries
    cli.py        `python -m panda_server.ddm.local.cli` / panda-ddm for operators

Typical use: `LocalDDM.from_settings(engine, settings)` (RSEs from schedconfig and storage_root).
"""

from __future__ import annotations

from panda_server.ddm.local.catalog import LocalDDM
from panda_server.ddm.local.rses import rse_map

__all__ = ["LocalDDM", "rse_map"]
