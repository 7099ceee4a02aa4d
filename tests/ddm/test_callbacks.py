"""The agent's datasetCompleted callbacks against a real HTTPS server that requires client
certificates; retries are driven with an explicit clock, never by sleeping."""

from __future__ import annotations

import dataclasses
import datetime as dt
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa

from panda_server.ddm.interface import SubscriptionState
from panda_server.ddm.local import LocalDDM, agent
from panda_server.ddm.local import tables as t
from panda_server.ddm.local.callbacks import callback_url
from tests.ddm.conftest import T0, info, name, payload, put


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def done_subscription(ddm: LocalDDM, rses: dict, tmp_path, callback: str) -> tuple[str, str]:
    """A one-file dataset at DIR_A subscribed to DIR_B with the callback: (name, vuid)."""
    ds, data = name(), payload(1000)
    f = info(data)
    vuid = ddm.register_dataset(ds, rse="DIR_A")
    put(rses, "DIR_A", f, data, tmp_path)
    ddm.register_files(ds, [f], "DIR_A")
    ddm.subscribe(ds, "DIR_B", callback=callback)
    return ds, vuid


def callback_row(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(t.subscriptions)).one()


def test_callback_url_appends_to_an_existing_query():
    assert callback_url("https://h:1/cb", "V-1", "SITE_X") == "https://h:1/cb?vuid=V-1&site=SITE_X"
    assert callback_url("https://h:1/cb?a=1", "V", "S") == "https://h:1/cb?a=1&vuid=V&site=S"


def test_the_agent_calls_back_over_mtls_with_vuid_and_site(
    ddm_db, dir_rses, settings, pki, callback_server, tmp_path
):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, vuid = done_subscription(ddm, dir_rses, tmp_path, callback_server.url + "?origin=test")
    summary = agent.run_once(ddm_db, settings, T0, rses=dir_rses)
    assert (summary.done, summary.callbacks_made, summary.callbacks_failed) == (1, 1, 0)
    [(path, subject)] = callback_server.calls
    parts = urlsplit(path)
    assert parts.path == "/server/panda/datasetCompleted"
    assert parse_qs(parts.query) == {"origin": ["test"], "vuid": [vuid], "site": ["DIR_B"]}
    assert "commonName" in subject  # the production proxy was presented and verified
    row = callback_row(ddm_db)
    assert (row.callback_pending, row.callback_attempts, row.callback_error) == (False, 1, None)
    agent.run_once(ddm_db, settings, at(3600), rses=dir_rses)
    assert len(callback_server.calls) == 1  # made once


def test_a_failing_callback_is_retried_with_back_off(ddm_db, dir_rses, settings, callback_server, tmp_path):
    callback_server.statuses[:] = [500, 503]
    ddm = LocalDDM(ddm_db, dir_rses)
    done_subscription(ddm, dir_rses, tmp_path, callback_server.url)
    assert agent.run_once(ddm_db, settings, T0, rses=dir_rses).callbacks_failed == 1
    row = callback_row(ddm_db)
    assert (row.callback_pending, row.callback_attempts, row.callback_next_try) == (True, 1, at(30))
    assert row.callback_error.startswith("HTTP 500")
    agent.run_once(ddm_db, settings, at(29), rses=dir_rses)
    assert len(callback_server.calls) == 1  # not due yet
    assert agent.run_once(ddm_db, settings, at(30), rses=dir_rses).callbacks_failed == 1
    assert callback_row(ddm_db).callback_next_try == at(30 + 60)
    assert agent.run_once(ddm_db, settings, at(90), rses=dir_rses).callbacks_made == 1
    assert len(callback_server.calls) == 3
    row = callback_row(ddm_db)
    assert (row.callback_pending, row.callback_attempts, row.state) == (False, 3, "done")


def test_a_callback_is_abandoned_after_its_attempts(
    ddm_db, dir_rses, settings, callback_server, tmp_path, caplog
):
    settings = dataclasses.replace(settings, ddm_callback_attempts=2)
    callback_server.statuses[:] = [500] * 5
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, _ = done_subscription(ddm, dir_rses, tmp_path, callback_server.url)
    for s in (0, 30, 90, 1000):
        agent.run_once(ddm_db, settings, at(s), rses=dir_rses)
    assert len(callback_server.calls) == 2
    row = callback_row(ddm_db)
    assert row.callback_pending is False and row.callback_error.startswith(
        "abandoned after 2 attempts: HTTP 500"
    )
    assert ddm.subscription(ds, "DIR_B").state == SubscriptionState.done  # what the data service polls
    assert "ddm callback abandoned" in caplog.text


def test_without_a_client_certificate_the_callback_fails(
    ddm_db, dir_rses, settings, callback_server, tmp_path
):
    settings = dataclasses.replace(settings, ddm_proxy=str(tmp_path / "no-such.proxy"))
    ddm = LocalDDM(ddm_db, dir_rses)
    done_subscription(ddm, dir_rses, tmp_path, callback_server.url)
    assert agent.run_once(ddm_db, settings, T0, rses=dir_rses).callbacks_failed == 1
    assert callback_server.calls == []  # the TLS handshake was refused
    assert callback_row(ddm_db).callback_error.startswith(
        "SSLError"
    )  # e.g. TLSV13_ALERT_CERTIFICATE_REQUIRED


def test_a_reopened_subscription_calls_back_again(ddm_db, dir_rses, settings, callback_server, tmp_path):
    ddm = LocalDDM(ddm_db, dir_rses)
    ds, vuid = done_subscription(ddm, dir_rses, tmp_path, callback_server.url)
    agent.run_once(ddm_db, settings, T0, rses=dir_rses)
    data = payload(500)
    more = info(data)
    put(dir_rses, "DIR_A", more, data, tmp_path)
    ddm.register_files(ds, [more], "DIR_A")
    assert ddm.subscription(ds, "DIR_B").state == SubscriptionState.queued
    summary = agent.run_once(ddm_db, settings, at(1), rses=dir_rses)
    assert (summary.copied, summary.done, summary.callbacks_made) == (1, 1, 1)
    assert [parse_qs(urlsplit(p).query)["vuid"] for p, _ in callback_server.calls] == [[vuid], [vuid]]
