"""LocalDDM's verbs against real PostgreSQL: results, idempotency and every refusal."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

import pytest
import sqlalchemy as sa

from panda_server.ddm.interface import DatasetNotFound, DatasetState, DDMError, SubscriptionState
from panda_server.ddm.local import LocalDDM, rse_map
from panda_server.ddm.local import tables as t
from panda_server.ddm.local.catalog import MAX_FILES
from panda_server.ddm.local.rses import locations, replica_url
from schedconfig.model import QueueSpec
from tests.ddm.conftest import SCOPE, info, name, payload


def test_register_dataset_get_and_list_files_in_order(ddm):
    files = [info(payload(100), lfn=f"f{i}.root") for i in (3, 1, 2)]
    ds = name()
    vuid = ddm.register_dataset(ds, files, rse="DIR_A")
    assert uuid.UUID(vuid)
    got = ddm.get_dataset(ds)
    assert (got.name, got.vuid, got.state, got.nfiles) == (ds, vuid, DatasetState.open, 3)
    assert ddm.list_files(ds) == files  # registration order, the files exactly as given
    assert ddm.list_replicas([f.guid for f in files]) == {f.guid: frozenset() for f in files}  # no replica


def test_unknown_dataset(ddm):
    missing = name("missing")
    assert ddm.get_dataset(missing) is None
    assert ddm.subscription(missing, "DIR_A") is None
    for call in (lambda: ddm.list_files(missing), lambda: ddm.close_dataset(missing),
                 lambda: ddm.register_files(missing, [info(b"x")], "DIR_A"),
                 lambda: ddm.subscribe(missing, "DIR_B")):  # fmt: skip
        with pytest.raises(DatasetNotFound, match=f"dataset {missing} does not exist"):
            call()
    ddm.erase_dataset(missing)  # a retried erase: no error


def test_registering_an_existing_name(ddm):
    empty, full = name("empty"), name("full")
    vuid = ddm.register_dataset(empty, rse="DIR_A")
    assert ddm.register_dataset(empty, rse="DIR_A") == vuid  # a retried setupper: same dataset
    with pytest.raises(DDMError, match=f"dataset {empty} already exists \\(location DIR_A, 0 files\\)"):
        ddm.register_dataset(empty, rse="DIR_B")
    ddm.register_dataset(full, [info(b"abc")], rse="DIR_A")
    with pytest.raises(DDMError, match=f"dataset {full} already exists \\(location DIR_A, 1 files\\)"):
        ddm.register_dataset(full, rse="DIR_A")


def test_register_files_records_replicas_and_duplicates_are_no_ops(ddm):
    ds, a, b = name(), info(b"first"), info(b"second")
    ddm.register_dataset(ds, rse="DIR_A")
    ddm.register_files(ds, [a], "DIR_A")
    ddm.register_files(ds, [a, b], "DIR_B")  # a again: same GUID, size, checksum → no-op
    assert ddm.list_files(ds) == [a, b]
    unknown = str(uuid.uuid4())
    assert ddm.list_replicas([a.guid, b.guid, unknown]) == {
        a.guid: frozenset({"DIR_A", "DIR_B"}),
        b.guid: frozenset({"DIR_B"}),
    }


def test_conflicting_file_registrations_are_refused(ddm):
    ds, other, f = name(), name("other"), info(b"content", lfn="conflict.root")
    ddm.register_dataset(ds, [f])
    ddm.register_dataset(other)
    with pytest.raises(DDMError, match=f"file {f.guid} is registered as {SCOPE}:conflict.root \\(7 bytes"):
        ddm.register_files(ds, [dataclasses.replace(f, fsize=8)], "DIR_A")
    with pytest.raises(DDMError, match="refusing"):
        ddm.register_files(other, [dataclasses.replace(f, checksum="ad:00000001")], "DIR_A")
    with pytest.raises(DDMError, match=f"file {SCOPE}:conflict.root is registered with GUID {f.guid}, not"):
        ddm.register_files(other, [dataclasses.replace(f, guid=str(uuid.uuid4()))], "DIR_A")
    with pytest.raises(DDMError, match="given twice"):
        ddm.register_files(other, [f, dataclasses.replace(f, fsize=1)], "DIR_A")
    assert ddm.list_files(other) == []  # each refusal rolled its whole call back
    assert ddm.list_replicas([f.guid]) == {f.guid: frozenset()}


def test_checksums_are_normalised_and_must_be_adler32(ddm):
    ds = name()
    ddm.register_dataset(ds)
    f = dataclasses.replace(info(b"x"), checksum="adler32:ABCD")
    ddm.register_files(ds, [f], "DIR_A")
    assert ddm.list_files(ds)[0].checksum == "ad:0000abcd"
    for bad in ("md5:" + "0" * 32, "", "ad:xyz", "ad:123456789"):
        with pytest.raises(DDMError, match="not ad:<8 hex digits>"):
            ddm.register_files(ds, [dataclasses.replace(info(b"y"), checksum=bad)], "DIR_A")


def test_closed_dataset_refuses_new_files_only(ddm):
    ds, f = name(), info(b"kept")
    ddm.register_dataset(ds, [f], rse="DIR_A")
    ddm.close_dataset(ds)
    ddm.close_dataset(ds)  # closing a closed dataset: no-op
    assert ddm.get_dataset(ds).state == DatasetState.closed
    with pytest.raises(DDMError, match=f"dataset {ds} is closed: cannot add 1 file"):
        ddm.register_files(ds, [info(b"new")], "DIR_A")
    ddm.register_files(ds, [f], "DIR_B")  # a file it already holds: its replica is recorded
    assert ddm.list_replicas([f.guid]) == {f.guid: frozenset({"DIR_B"})}
    empty = name("empty")
    ddm.register_dataset(empty, rse="DIR_A")
    ddm.close_dataset(empty)
    with pytest.raises(DDMError, match=f"dataset {empty} is closed"):  # a retried registration with files
        ddm.register_dataset(empty, [info(b"more")], rse="DIR_A")


def test_input_bounds(ddm):
    ds = name()
    ddm.register_dataset(ds)
    with pytest.raises(DDMError, match="at most 255"):
        ddm.get_dataset("d" * 256)
    with pytest.raises(DDMError, match="white space"):
        ddm.register_dataset("two words")
    with pytest.raises(DDMError, match=f"at most {MAX_FILES}"):
        ddm.register_files(ds, [info(b"z")] * (MAX_FILES + 1), "DIR_A")
    with pytest.raises(DDMError, match=f"at most {MAX_FILES}"):
        ddm.list_replicas(str(i) for i in range(MAX_FILES + 1))
    with pytest.raises(DDMError, match="contains '/'"):
        ddm.register_files(ds, [dataclasses.replace(info(b"z"), lfn="a/b")], "DIR_A")
    with pytest.raises(DDMError, match="not a byte count"):
        ddm.register_files(ds, [dataclasses.replace(info(b"z"), fsize=-1)], "DIR_A")
    with pytest.raises(DDMError, match="unknown RSE 'NOWHERE' \\(known RSEs: DIR_A, DIR_B, DIR_C\\)"):
        ddm.register_files(ds, [info(b"z")], "NOWHERE")
    with pytest.raises(DDMError, match="unknown source RSE 'NOWHERE'"):
        ddm.subscribe(ds, "DIR_B", source="NOWHERE")
    with pytest.raises(DDMError, match="callback must be an http\\(s\\) URL"):
        ddm.subscribe(ds, "DIR_B", callback="ftp://example.org/x")


def test_subscribe_is_idempotent_and_counts_files(ddm):
    ds, a, b = name(), info(b"a"), info(b"b")
    ddm.register_dataset(ds, rse="DIR_A")
    ddm.register_files(ds, [a, b], "DIR_A")
    ddm.register_files(ds, [b], "DIR_B")
    sub = ddm.subscribe(ds, "DIR_B", source="DIR_A", callback="https://h/cb")
    assert (sub.dataset, sub.rse, sub.state, sub.files_total, sub.files_done, sub.error) == (
        ds, "DIR_B", SubscriptionState.queued, 2, 1, None)  # fmt: skip
    assert ddm.subscribe(ds, "DIR_B") == sub  # the existing one
    assert ddm.subscription(ds, "DIR_B") == sub
    assert ddm.subscription(ds, "DIR_C") is None


def test_erase_removes_dataset_and_subscriptions_but_not_replicas(ddm, ddm_db):
    ds, f = name(), info(b"stays")
    ddm.register_dataset(ds, rse="DIR_A")
    ddm.register_files(ds, [f], "DIR_A")
    ddm.subscribe(ds, "DIR_B")
    ddm.erase_dataset(ds)
    assert ddm.get_dataset(ds) is None and ddm.subscription(ds, "DIR_B") is None
    assert ddm.list_replicas([f.guid]) == {f.guid: frozenset({"DIR_A"})}
    ddm.register_dataset(ds, [f])  # the name is free again; the file is reused
    assert ddm.list_files(ds) == [f]
    with ddm_db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.subscriptions)).scalar() == 0


def test_rses_can_come_from_a_function(ddm_db):
    calls = []
    ddm = LocalDDM(ddm_db, lambda: calls.append(1) or {"ONLY": ("file://localhost", "/tmp/x")})
    ddm.register_dataset(name(), rse="ONLY")
    with pytest.raises(DDMError, match="unknown location RSE 'DIR_A' \\(known RSEs: ONLY\\)"):
        ddm.register_dataset(name(), rse="DIR_A")
    assert len(calls) == 2


# ---------------------------------------------------------------- RSE map and replica URLs


def test_rse_map_from_schedconfig(engine, schedconfig_loaded, tmp_path):
    with engine.connect() as conn:
        found = rse_map(conn, tmp_path)
    assert found["CLOUDA_T1_DATADISK"] == ("file://localhost", str(tmp_path / "CLOUDA_T1_DATADISK"))
    assert found["CLOUDA_T2_1_DATADISK"] == ("file://localhost", str(tmp_path / "CLOUDA_T2_1_DATADISK"))
    assert not any(rse.startswith("ANALY_") for rse in found)  # analysis queues share their site's RSE


def test_rse_locations_conflicts():
    a = QueueSpec(nickname="A", cloud="C", ddm="SE1", se_path="/data/one")
    b = QueueSpec(nickname="B", cloud="C", ddm="SE1", se_path="/data/two", status="offline")
    c = QueueSpec(nickname="X", cloud="C", ddm="SE2", se_path="root://host:1094/store")
    assert locations([a, b, c], "/root") == {
        "SE1": ("file://localhost", "/data/one"),  # the offline queue's other path is ignored
        "SE2": ("root://host:1094", "/store"),
    }
    d = dataclasses.replace(b, nickname="D", status="online")
    with pytest.raises(DDMError, match="the queues using RSE SE1 disagree about its location \\(A, D\\)"):
        locations([a, d], "/root")


def test_replica_urls_are_the_pilots_rucio_paths():
    digest = hashlib.md5(b"mc08:EVNT.01.pool.root").hexdigest()
    rel = f"mc08/{digest[:2]}/{digest[2:4]}/EVNT.01.pool.root"
    assert replica_url(("file://localhost", "/se/T1"), "T1", "mc08", "EVNT.01.pool.root") == (
        f"file://localhost/se/T1/{rel}"
    )
    assert replica_url(("root://127.0.0.1:1094", "/atlas/disk"), "X", "mc08", "EVNT.01.pool.root") == (
        f"root://127.0.0.1:1094//atlas/disk/{rel}"
    )
