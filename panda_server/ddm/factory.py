"""The DDM backend the server and its daemons use (settings.ddm_backend)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from panda_server.ddm.interface import DDM
from panda_server.settings import Settings

BACKENDS = ("local",)


def make_ddm(engine: Engine, settings: Settings) -> DDM:
    """A DDM client for `settings.ddm_backend`; the local one reads RSE locations from schedconfig."""
    if settings.ddm_backend != "local":
        raise ValueError(
            f"PANDA_DDM_BACKEND={settings.ddm_backend!r}: known backends are {', '.join(BACKENDS)}"
        )
    from panda_server.ddm.local.catalog import LocalDDM
    from panda_server.ddm.local.rses import rse_map

    def rses():
        with engine.connect() as conn:
            return rse_map(conn, settings.storage_root)

    return LocalDDM(engine, rses)
