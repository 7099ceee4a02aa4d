"""The local DDM transfer agent: one cycle of `panda-daemon ddm` (docs/ddm.md).

A cycle (run_once):
 1. claim (claims.py): one short transaction locks up to claims.MAX_SUBSCRIPTIONS queued/active
    subscriptions and leases up to claims.MAX_FILES due transfers.
 2. copy, outside any transaction: per file a source replica — the subscription's source first,
    then the other RSEs with the file, one per attempt in turn — and a verified copy with the
    pilot's copy tools (transfer.py).
 3. record, one transaction per file: the replica at the destination, or the failure with
    back-off ddm_backoff * 2**(attempts-1); after ddm_max_attempts failures the subscription is
    `failed` with an error naming the file, source, destination and last error.
 4. complete, one transaction per subscription: active with every file at the destination →
    `done`, and its callback becomes due; callbacks.py makes the due callbacks, with retries.
Every attempt and callback is logged (logger panda.ddm.agent) with dataset, file, source,
destination, attempt, bytes and seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from panda_server.db.engine import transaction
from panda_server.ddm.interface import RSEMap, SubscriptionState
from panda_server.ddm.local import callbacks, claims, store, transfer
from panda_server.ddm.local import tables as t
from panda_server.ddm.local.catalog import read_rse_map
from panda_server.ddm.local.claims import Work
from panda_server.ddm.local.rses import replica_url
from panda_server.settings import Settings
from pilot.copytools.base import TransferContext

log = logging.getLogger("panda.ddm.agent")


@dataclasses.dataclass
class Summary:
    subscriptions: int = 0  # claimed this cycle
    copied: int = 0  # verified copies recorded
    attempts_failed: int = 0
    done: int = 0  # subscriptions that became done
    failed: int = 0  # subscriptions that became failed
    callbacks_made: int = 0
    callbacks_failed: int = 0


def run_once(engine: Engine, settings: Settings, now: dt.datetime, *, rses: RSEMap | None = None) -> Summary:
    """One agent cycle (see the module docstring); `now` is the cycle's clock (naive UTC).

    `rses` replaces the RSE map read from schedconfig (tests, tools); the daemon leaves it out.
    """
    summary = Summary()
    rses = read_rse_map(engine, settings.storage_root) if rses is None else rses
    claimed, work = claims.claim(engine, settings, now)
    summary.subscriptions = len(claimed)
    context = transfer_context(settings)
    for item in work:
        _attempt(engine, settings, rses, context, item, now, summary)
    for subscription_id in claimed:
        summary.done += _complete(engine, subscription_id, now)
    made, failed = callbacks.run(engine, settings, now)
    summary.callbacks_made, summary.callbacks_failed = made, failed
    if work or summary.done or made or failed:
        log.info("ddm cycle: %s", summary)
    return summary


def transfer_context(settings: Settings) -> TransferContext:
    """The agent's credentials for the copy tools (X509_USER_PROXY, X509_CERT_DIR) when they exist."""
    proxy, ca_dir = settings.ddm_proxy_path, settings.ddm_ca_path
    return TransferContext(
        proxy=str(proxy) if proxy.is_file() else None, ca_dir=str(ca_dir) if ca_dir.is_dir() else None
    )


# ---------------------------------------------------------------- 2. copy and 3. record


def _attempt(
    engine: Engine,
    settings: Settings,
    rses: RSEMap,
    context: TransferContext,
    item: Work,
    now: dt.datetime,
    summary: Summary,
) -> None:
    """Copy one leased file, log it and record what happened."""
    usable = [rse for rse in item.sources if rse in rses]
    source = usable[(item.attempt - 1) % len(usable)] if usable else None
    if item.rse not in rses:
        outcome = transfer.Outcome("-", 0.0, error=f"destination RSE {item.rse} is not in schedconfig")
    elif source is None:
        where = ", ".join(item.sources) or "no RSE"
        outcome = transfer.Outcome("-", 0.0, error=f"no source replica at a known RSE (replicas at {where})")
    else:
        source_url = replica_url(rses[source], source, item.scope, item.lfn)
        destination_url = replica_url(rses[item.rse], item.rse, item.scope, item.lfn)
        copy = transfer.Copy(item.lfn, source_url, destination_url, item.fsize, item.adler32)
        outcome = transfer.copy_verified(copy, context)
    _log_attempt(item, source, outcome, settings.ddm_max_attempts)
    with transaction(engine) as conn:
        if outcome.ok:
            _record_copy(conn, item, source, now)
            summary.copied += 1
        else:
            summary.attempts_failed += 1
            summary.failed += _record_failure(conn, settings, item, source, outcome.error or "", now)


def _log_attempt(item: Work, source: str | None, outcome: transfer.Outcome, max_attempts: int) -> None:
    log.log(
        logging.INFO if outcome.ok else logging.WARNING,
        "ddm transfer dataset=%s file=%s:%s guid=%s source=%s destination=%s attempt=%d/%d tool=%s "
        "bytes=%d seconds=%.2f %s",
        *(item.dataset, item.scope, item.lfn, item.guid, source, item.rse, item.attempt, max_attempts),
        *(outcome.tool, outcome.nbytes, outcome.seconds, "ok" if outcome.ok else f"failed: {outcome.error}"),
    )


def _mine(item: Work) -> sa.ColumnElement[bool]:
    """The transfer row of this lease (same attempt: nobody took it over meanwhile)."""
    tr = t.transfers
    return sa.and_(
        tr.c.subscription_id == item.subscription_id,
        tr.c.guid == item.guid,
        tr.c.attempts == item.attempt,
        tr.c.state == "copying",
    )


def _record_copy(conn: Connection, item: Work, source: str | None, now: dt.datetime) -> None:
    store.record_replicas(conn, [item.guid], item.rse, now)
    conn.execute(sa.update(t.transfers).where(_mine(item)).values(state="done", source=source, modified=now))


def _record_failure(
    conn: Connection, settings: Settings, item: Work, source: str | None, error: str, now: dt.datetime
) -> int:
    """Back off, or give up on the file (returns 1 when the subscription failed)."""
    name, route = f"{item.scope}:{item.lfn}", f"{source} → {item.rse}"
    if item.attempt >= settings.ddm_max_attempts:
        return claims.give_up(conn, item.subscription_id, item.guid, name, route, error, item.attempt, now)
    delay = dt.timedelta(seconds=settings.ddm_backoff * 2 ** (item.attempt - 1))
    conn.execute(
        sa.update(t.transfers)
        .where(_mine(item))
        .values(state="waiting", next_try=now + delay, source=source, last_error=error, modified=now)
    )
    s = t.subscriptions
    text = f"{name} {route} attempt {item.attempt}/{settings.ddm_max_attempts}: {error}"
    conn.execute(sa.update(s).where(s.c.id == item.subscription_id).values(error=text[: claims.ERROR_LENGTH]))
    return 0


# ---------------------------------------------------------------- 4. complete


def _complete(engine: Engine, subscription_id: int, now: dt.datetime) -> int:
    """An active subscription with every file at its destination becomes done (1), else 0.

    The dataset row is locked first (FOR SHARE), as register_files locks it (FOR UPDATE) before
    re-opening subscriptions: a file added meanwhile is either seen here or re-opens this one.
    """
    s, d, df = t.subscriptions, t.datasets, t.dataset_files
    with transaction(engine) as conn:
        sub = conn.execute(
            sa.select(s.c.dataset_id, s.c.rse, s.c.callback, s.c.state, d.c.name)
            .join(d, d.c.id == s.c.dataset_id)
            .where(s.c.id == subscription_id)
        ).first()
        if sub is None or sub.state != claims.ACTIVE:
            return 0
        conn.execute(sa.select(d.c.id).where(d.c.id == sub.dataset_id).with_for_update(read=True))
        missing = sa.exists().where(
            df.c.dataset_id == sub.dataset_id, claims.missing_at(sa.literal(sub.rse), df.c.guid)
        )
        done = conn.execute(
            sa.update(s)
            .where(s.c.id == subscription_id, s.c.state == claims.ACTIVE, ~missing)
            .values(state=SubscriptionState.done.value, modified=now, callback_pending=sub.callback is not None,
                    callback_attempts=0, callback_next_try=now, callback_error=None)
        ).rowcount  # fmt: skip
    if done:
        log.info("ddm subscription done dataset=%s destination=%s callback=%s", sub.name, sub.rse,
                 sub.callback or "none")  # fmt: skip
    return done
