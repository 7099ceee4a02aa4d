"""The agent's callbacks: GET <callback>?vuid=<vuid>&site=<rse> when a subscription becomes done.

This is DQ2's DATASET_COMPLETE_EVENT: PanDA's datasetCompleted URL, called over HTTPS with the
agent's proxy as client certificate (Settings.ddm_proxy_path, default the PKI's production proxy)
against the CA directory Settings.ddm_ca_path. A 2xx answer is success. A failed call is retried
on later cycles after ddm_backoff * 2**(attempts-1) s, up to ddm_callback_attempts calls, then
abandoned with an error log line: the data service's polling of subscription() is the fallback.
Due callbacks are claimed FOR UPDATE SKIP LOCKED with a lease (callback_next_try) in a short
transaction; the HTTP calls happen outside any transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from panda_server.db.engine import transaction
from panda_server.ddm.interface import SubscriptionState
from panda_server.ddm.local import tables as t
from panda_server.settings import Settings

log = logging.getLogger("panda.ddm.agent")

MAX_CALLBACKS = 50  # callbacks made per cycle
TIMEOUT = 30.0  # s per HTTP call
LEASE = TIMEOUT + 30.0  # s a claimed callback is left alone by other agents
ERROR_LENGTH = 1000


def callback_url(base: str, vuid: str, rse: str) -> str:
    """base with vuid=<vuid>&site=<rse> appended to its query (after '&' if it has one)."""
    parts = urlsplit(base)
    extra = urlencode({"vuid": vuid, "site": rse})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def run(engine: Engine, settings: Settings, now: dt.datetime) -> tuple[int, int]:
    """Make the due callbacks: (made, failed) this cycle."""
    due = _claim(engine, now)
    if not due:
        return 0, 0
    made = failed = 0
    with session_for(settings) as http:
        for row in due:
            error = _call(http, row, settings)
            _record(engine, settings, row, error, now)
            made, failed = (made + 1, failed) if error is None else (made, failed + 1)
    return made, failed


def session_for(settings: Settings) -> requests.Session:
    """A requests session presenting the agent's proxy (if the file exists), trusting its CA dir."""
    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE and proxies from the environment do not apply
    proxy, ca_dir = settings.ddm_proxy_path, settings.ddm_ca_path
    if proxy.is_file():
        http.cert = str(proxy)
    else:
        log.warning("ddm callbacks: proxy %s does not exist; calling without a client certificate", proxy)
    http.verify = str(ca_dir) if ca_dir.is_dir() else True
    return http


def _claim(engine: Engine, now: dt.datetime) -> list[Row]:
    s, d = t.subscriptions, t.datasets
    query = (
        sa.select(s.c.id, s.c.rse, s.c.callback, s.c.callback_attempts, d.c.vuid, d.c.name)
        .join(d, d.c.id == s.c.dataset_id)
        .where(s.c.callback_pending, s.c.state == SubscriptionState.done.value, s.c.callback_next_try <= now)
        .order_by(s.c.callback_next_try, s.c.id)
        .limit(MAX_CALLBACKS)
        .with_for_update(of=s, skip_locked=True)
    )
    with transaction(engine) as conn:
        rows = conn.execute(query).all()
        if rows:
            lease = now + dt.timedelta(seconds=LEASE)
            conn.execute(sa.update(s).where(s.c.id.in_([r.id for r in rows])).values(
                callback_next_try=lease, callback_attempts=s.c.callback_attempts + 1))  # fmt: skip
    return rows


def _call(http: requests.Session, row: Row, settings: Settings) -> str | None:
    """One GET of the callback; None on a 2xx answer, else what went wrong. Logged."""
    url = callback_url(row.callback, row.vuid, row.rse)
    attempt = row.callback_attempts + 1
    start = time.monotonic()
    try:
        response = http.get(url, timeout=TIMEOUT)
        error = (
            None
            if 200 <= response.status_code < 300
            else f"HTTP {response.status_code}: {response.text[:200]}"
        )
    except (requests.RequestException, OSError) as exc:  # OSError: unreadable proxy file
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - start
    log.log(logging.INFO if error is None else logging.WARNING,
            "ddm callback dataset=%s destination=%s attempt=%d/%d seconds=%.2f url=%s %s", row.name, row.rse,
            attempt, settings.ddm_callback_attempts, seconds, url, "ok" if error is None else f"failed: {error}")  # fmt: skip
    return error


def _record(engine: Engine, settings: Settings, row: Row, error: str | None, now: dt.datetime) -> None:
    """Done, retry later, or give up (the subscription stays done; the data service polls it)."""
    s = t.subscriptions
    attempt = row.callback_attempts + 1
    mine = sa.and_(s.c.id == row.id, s.c.callback_pending, s.c.callback_attempts == attempt)
    if error is None:
        values: dict = dict(callback_pending=False, callback_error=None)
    elif attempt >= settings.ddm_callback_attempts:
        values = dict(callback_pending=False, callback_error=f"abandoned after {attempt} attempts: {error}")
        log.error("ddm callback abandoned dataset=%s destination=%s after %d attempts (last: %s); the data "
                  "service must poll the subscription", row.name, row.rse, attempt, error)  # fmt: skip
    else:
        delay = dt.timedelta(seconds=settings.ddm_backoff * 2 ** (attempt - 1))
        values = dict(callback_next_try=now + delay, callback_error=error)
    if values.get("callback_error"):
        values["callback_error"] = values["callback_error"][:ERROR_LENGTH]
    with transaction(engine) as conn:
        conn.execute(sa.update(s).where(mine).values(**values))
