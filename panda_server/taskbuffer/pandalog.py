"""Logger records (the classic HTTP logger's pandalog table): who did what, by Type."""

from __future__ import annotations

import datetime as dt
import logging
import os

from sqlalchemy.engine import Connection

from panda_server.db import tables as t


def record(
    conn: Connection,
    type_: str,
    message: str,
    *,
    now: dt.datetime,
    user: str = "",
    level: int = logging.INFO,
    name: str = "panda.server",
) -> None:
    """One pandalog row; Types as in S08: submitJobs, killJobs, reassignJobs, getJob, updateJob."""
    conn.execute(
        t.pandalog.insert().values(
            bintime=now, name=name, module=type_, loguser=user, type=type_, pid=os.getpid(),
            loglevel=level, levelname=logging.getLevelName(level), time=now.strftime("%Y-%m-%d %H:%M:%S"),
            message=message[:4000],
        )
    )  # fmt: skip
