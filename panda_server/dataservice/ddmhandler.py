"""DDMHandler: what `datasetCompleted?vuid=…&site=…` sets off (S08 DDMHandler.py, §5.5).

The vuid names one of PanDA's datasets: a dispatch dataset → the activator; a `_sub` output
dataset → the finisher. Unlike S08, the claim is checked with DDM before anything changes (a
dispatch dataset is activated only if DDM says its subscription to that site is done; the
finisher looks at the replicas itself), so a stale or forged call cannot activate a job whose
input is not there. The call always answers True, as S08 did; what happened is logged.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.engine import Connection

from panda_server.dataservice import activator, datasets, finisher
from panda_server.dataservice.context import DataService
from panda_server.ddm.interface import SubscriptionState

log = logging.getLogger(__name__)


def dataset_completed(conn: Connection, svc: DataService, vuid: str, site: str, now: dt.datetime) -> str:
    """Act on the callback; returns what was done (for the log)."""
    row = datasets.by_vuid(conn, vuid)
    if row is None:
        outcome = "unknown vuid: ignored"
    elif row["type"] == "dispatch":
        outcome = _dispatch(conn, svc, row["name"], site, now)
    elif row["type"] == "output":
        outcome = f"{finisher.finish_dataset(conn, svc, row['name'], now)} jobs finished"
    else:
        outcome = f"dataset type {row['type']}: nothing to do"
    log.info("datasetCompleted vuid=%s site=%s: %s", vuid, site, outcome)
    return outcome


def _dispatch(conn: Connection, svc: DataService, name: str, site: str, now: dt.datetime) -> str:
    sub = svc.ddm.subscription(name, site)
    if sub is None or sub.state != SubscriptionState.done:
        return f"{name} at {site} is {sub.state if sub else 'not subscribed'} in DDM: ignored"
    return f"{activator.activate_dataset(conn, name, now)} jobs activated"
