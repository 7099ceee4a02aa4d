"""The transfer agent against real storage: directories and the session's XRootD server.

run_once is driven with an explicit clock (T0 + seconds), so back-off is exercised without
sleeping; every loop here is a fixed number of cycles.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from panda_server.ddm.interface import SubscriptionState
from panda_server.ddm.local import LocalDDM, agent, claims, rse_map
from panda_server.ddm.local import tables as t
from pilot.copytools.base import local_path
from tests.ddm.conftest import T0, info, name, payload, put, stored, url_of


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def transfer_row(engine, guid: str):
    with engine.connect() as conn:
        return conn.execute(sa.select(t.transfers).where(t.transfers.c.guid == guid)).one()


def seeded(ddm: LocalDDM, rses: dict, rse: str, tmp_path: Path, n: int = 2, size: int = 60_000):
    """A dataset of n files written at rse and registered there: (name, [(FileInfo, data)])."""
    ds, files = name(), []
    ddm.register_dataset(ds, rse=rse)
    for _ in range(n):
        data = payload(size)
        f = info(data)
        put(rses, rse, f, data, tmp_path)
        files.append((f, data))
    ddm.register_files(ds, [f for f, _ in files], rse)
    return ds, files


def test_dir_to_dir_with_rses_from_schedconfig(ddm_db, schedconfig_loaded, settings, xrootd, tmp_path):
    with ddm_db.connect() as conn:
        rses = rse_map(conn, settings.storage_root)
    ddm = LocalDDM.from_settings(ddm_db, settings)
    src, dst = "CLOUDA_T1_DATADISK", "CLOUDA_T2_1_DATADISK"
    ds, files = seeded(ddm, rses, src, tmp_path)
    ddm.subscribe(ds, dst, source=src)
    summary = agent.run_once(ddm_db, settings, T0)
    assert (summary.copied, summary.done, summary.attempts_failed) == (2, 1, 0)
    for f, data in files:
        path = Path(local_path(url_of(rses, dst, f)))
        assert path.is_relative_to(settings.storage_root / dst) and path.read_bytes() == data
        assert stored(xrootd, url_of(rses, dst, f)) == (f.fsize, f.checksum[3:])
    assert ddm.list_replicas([f.guid for f, _ in files]) == {f.guid: frozenset({src, dst}) for f, _ in files}
    sub = ddm.subscription(ds, dst)
    assert (sub.state, sub.files_total, sub.files_done, sub.error) == (SubscriptionState.done, 2, 2, None)


@pytest.mark.parametrize(
    "src, dst", [("DIR_A", "DIR_B"), ("XRD_A", "DIR_B"), ("DIR_A", "XRD_A"), ("XRD_A", "XRD_B")]
)
def test_copies_are_verified_on_the_destination_storage(ddm_db, rses, settings, xrootd, tmp_path, src, dst):
    ddm = LocalDDM(ddm_db, rses)
    ds, files = seeded(ddm, rses, src, tmp_path, size=300_000)
    ddm.subscribe(ds, dst)
    for f, _ in files:
        assert stored(xrootd, url_of(rses, dst, f)) is None
    summary = agent.run_once(ddm_db, settings, T0, rses=rses)
    assert (summary.copied, summary.done) == (2, 1)
    for f, _ in files:
        assert stored(xrootd, url_of(rses, dst, f)) == (f.fsize, f.checksum[3:])  # read back from the SE
        row = transfer_row(ddm_db, f.guid)
        assert (row.state, row.attempts, row.source) == ("done", 1, src)
    assert ddm.subscription(ds, dst).state == SubscriptionState.done
    assert agent.run_once(ddm_db, settings, at(1), rses=rses).copied == 0  # nothing left to do


def test_a_bad_source_fails_twice_then_succeeds_with_back_off(ddm_db, dir_rses, settings, xrootd, tmp_path):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, [(f, data)] = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=1)
    source = put(dir_rses, "DIR_A", f, b"corrupted" + data[9:], tmp_path)  # same size, wrong adler32
    ddm.subscribe(ds, "DIR_B")
    destination = url_of(dir_rses, "DIR_B", f)

    assert agent.run_once(ddm_db, settings, T0, rses=dir_rses).attempts_failed == 1
    row = transfer_row(ddm_db, f.guid)
    assert (row.state, row.attempts, row.next_try) == ("waiting", 1, at(30))  # back-off 30 s * 2**0
    assert "checksum" in row.last_error and f.checksum[3:] in row.last_error
    assert stored(xrootd, destination) is None  # the bad copy was removed
    sub = ddm.subscription(ds, "DIR_B")
    assert sub.state == SubscriptionState.active and f.lfn in sub.error and "attempt 1/3" in sub.error

    assert agent.run_once(ddm_db, settings, at(29), rses=dir_rses).attempts_failed == 0  # not due yet
    assert agent.run_once(ddm_db, settings, at(30), rses=dir_rses).attempts_failed == 1
    assert transfer_row(ddm_db, f.guid).next_try == at(30 + 60)  # 30 s * 2**1

    Path(local_path(source)).write_bytes(data)  # the site repairs its replica
    assert agent.run_once(ddm_db, settings, at(89), rses=dir_rses).copied == 0
    summary = agent.run_once(ddm_db, settings, at(90), rses=dir_rses)
    assert (summary.copied, summary.done) == (1, 1)
    row = transfer_row(ddm_db, f.guid)
    assert (row.state, row.attempts) == ("done", 3)
    assert stored(xrootd, destination) == (f.fsize, f.checksum[3:])
    assert ddm.subscription(ds, "DIR_B").state == SubscriptionState.done


def test_a_transfer_that_keeps_failing_fails_the_subscription(ddm_db, dir_rses, settings, tmp_path):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, [(good, _), (bad, data)] = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=2)
    put(dir_rses, "DIR_A", bad, data[:-1] + bytes([data[-1] ^ 1]), tmp_path)
    ddm.subscribe(ds, "DIR_B")
    outcomes = [agent.run_once(ddm_db, settings, at(s), rses=dir_rses) for s in (0, 30, 90, 300)]
    assert [o.attempts_failed for o in outcomes] == [1, 1, 1, 0]
    assert [o.failed for o in outcomes] == [0, 0, 1, 0]
    sub = ddm.subscription(ds, "DIR_B")
    assert (sub.state, sub.files_total, sub.files_done) == (SubscriptionState.failed, 2, 1)
    assert f"gave up on {bad.scope}:{bad.lfn}" in sub.error and "DIR_A → DIR_B" in sub.error
    assert "after 3 attempt(s)" in sub.error and "checksum" in sub.error
    assert (transfer_row(ddm_db, bad.guid).state, transfer_row(ddm_db, good.guid).state) == ("failed", "done")


def test_no_source_replica_anywhere(ddm_db, dir_rses, settings):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, f = name(), info(b"nowhere")
    ddm.register_dataset(ds, [f])  # registered, but no replica anywhere
    ddm.subscribe(ds, "DIR_B")
    for s in (0, 30, 90):
        agent.run_once(ddm_db, settings, at(s), rses=dir_rses)
    sub = ddm.subscription(ds, "DIR_B")
    assert sub.state == SubscriptionState.failed and "no source replica at a known RSE" in sub.error


def test_preferred_source_first_then_the_others(ddm_db, dir_rses, settings, xrootd, tmp_path):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, [(f, data)] = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=1)
    put(dir_rses, "DIR_C", f, b"X" + data[1:], tmp_path)  # the preferred source is corrupt
    ddm.register_files(ds, [f], "DIR_C")
    ddm.subscribe(ds, "DIR_B", source="DIR_C")
    agent.run_once(ddm_db, settings, T0, rses=dir_rses)
    row = transfer_row(ddm_db, f.guid)
    assert (row.state, row.source, row.attempts) == ("waiting", "DIR_C", 1)
    agent.run_once(ddm_db, settings, at(30), rses=dir_rses)
    row = transfer_row(ddm_db, f.guid)
    assert (row.state, row.source, row.attempts) == ("done", "DIR_A", 2)
    assert stored(xrootd, url_of(dir_rses, "DIR_B", f)) == (f.fsize, f.checksum[3:])


def test_adding_files_reopens_a_done_subscription(ddm_db, dir_rses, settings, tmp_path):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, files = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=1)
    ddm.subscribe(ds, "DIR_B")
    agent.run_once(ddm_db, settings, T0, rses=dir_rses)
    assert ddm.subscription(ds, "DIR_B").state == SubscriptionState.done
    data = payload()
    more = info(data)
    put(dir_rses, "DIR_A", more, data, tmp_path)
    ddm.register_files(ds, [more], "DIR_A")
    sub = ddm.subscription(ds, "DIR_B")
    assert (sub.state, sub.files_total, sub.files_done) == (SubscriptionState.queued, 2, 1)
    ddm.register_files(ds, [more], "DIR_A")  # nothing new: stays queued, no second re-open
    summary = agent.run_once(ddm_db, settings, at(1), rses=dir_rses)
    assert (summary.copied, summary.done) == (1, 1)
    sub = ddm.subscription(ds, "DIR_B")
    assert (sub.state, sub.files_total, sub.files_done) == (SubscriptionState.done, 2, 2)


def test_an_attempt_whose_agent_died_is_retried_after_its_lease(ddm_db, dir_rses, settings, tmp_path):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, [(f, _)] = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=1)
    ddm.subscribe(ds, "DIR_B")
    _, [work] = claims.claim(ddm_db, settings, T0)  # leased, then the agent "dies"
    assert work.attempt == 1
    assert agent.run_once(ddm_db, settings, at(60), rses=dir_rses).copied == 0  # still leased
    lease_end = transfer_row(ddm_db, f.guid).next_try
    summary = agent.run_once(ddm_db, settings, lease_end, rses=dir_rses)
    assert (summary.copied, summary.done) == (1, 1)
    row = transfer_row(ddm_db, f.guid)
    assert row.attempts == 2 and "did not report back" in row.last_error


def test_work_per_cycle_is_bounded(ddm_db, dir_rses, settings, tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "MAX_FILES", 2)
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, _ = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=3, size=1000)
    ddm.subscribe(ds, "DIR_B")
    first = agent.run_once(ddm_db, settings, T0, rses=dir_rses)
    second = agent.run_once(ddm_db, settings, at(1), rses=dir_rses)
    assert [(s.copied, s.done) for s in (first, second)] == [(2, 0), (1, 1)]


def test_max_attempts_and_back_off_come_from_settings(ddm_db, dir_rses, settings, tmp_path):
    settings = dataclasses.replace(settings, ddm_max_attempts=2, ddm_backoff=5)
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, [(f, data)] = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=1)
    put(dir_rses, "DIR_A", f, bytes(len(data)), tmp_path)
    ddm.subscribe(ds, "DIR_B")
    agent.run_once(ddm_db, settings, T0, rses=dir_rses)
    assert transfer_row(ddm_db, f.guid).next_try == at(5)
    assert agent.run_once(ddm_db, settings, at(5), rses=dir_rses).failed == 1
    assert ddm.subscription(ds, "DIR_B").state == SubscriptionState.failed


def test_a_destination_replica_gone_bad_is_copied_again_when_reopened(ddm_db, dir_rses, settings, tmp_path):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, [(f, _)] = seeded(ddm, dir_rses, "DIR_A", tmp_path, n=1)
    ddm.subscribe(ds, "DIR_B")
    agent.run_once(ddm_db, settings, T0, rses=dir_rses)
    with ddm_db.begin() as conn:  # an operator takes the destination replica out of use
        r = t.replicas
        conn.execute(sa.update(r).where(r.c.guid == f.guid, r.c.rse == "DIR_B").values(state="bad"))
    data = payload(100)
    more = info(data)
    put(dir_rses, "DIR_A", more, data, tmp_path)
    ddm.register_files(ds, [more], "DIR_A")  # re-opens the subscription
    summary = agent.run_once(ddm_db, settings, at(1), rses=dir_rses)
    assert (summary.copied, summary.done) == (2, 1)
    assert ddm.list_replicas([f.guid]) == {f.guid: frozenset({"DIR_A", "DIR_B"})}
