"""Signed job specifications on the server side, over real mTLS: submitJobs signs each job with
the PKI's job-signing key and stores the signature; getJob and /api/v1/pilot/acquire_jobs send
it as jobSignature; /cache/jobsign-pub.pem publishes the key that verifies it.

What a pilot does with it is tested with our pilot in tests/e2e/pilot_runs/test_pilot_signing.py.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.errors import PandaError
from panda_server.protocol import signing
from panda_server.protocol.jobspec import FileSpec
from panda_server.taskbuffer import rows, store
from tests.wire.helpers import (
    ANALY_SITE,
    TIMEOUT,
    force_status,
    json_text,
    legacy,
    reply,
    submit,
    user_job,
    v1,
)

CHANGED = "signature does not match: the job specification was changed after submission"


def signed_job(**attrs):
    """Jane's analysis job with $PANDAID in its parameters and outputs, an output and a log added
    before three inputs (one an adler32, one an md5 only, and the first again: the reply collapses it)."""
    job = user_job(params="-c 'echo $PANDAID > out.$PANDAID'", transformation="/bin/bash", **attrs)
    for lfn, sums in (("in.b.root", {"checksum": "ad:00000001"}), ("in.a.root", {"md5sum": "0" * 31 + "2"}),
                      ("in.b.root", {"checksum": "ad:00000001"})):  # fmt: skip
        job.add_file(FileSpec(lfn=lfn, type="input", dataset="data.in", prodDBlock="data.in", scope="test",
                              GUID=f"guid-{lfn}", fsize=1, status="ready", **sums))  # fmt: skip
    return job


def public_key(live) -> signing.PublicKey:
    return signing.load_public_key(live.pki.jobsign_pub.read_bytes(), str(live.pki.jobsign_pub))


def stored_signature(engine, panda_id: int) -> str | None:
    p = t.jobparamstable
    with engine.connect() as conn:
        return conn.execute(sa.select(p.c.jobSignature).where(p.c.PandaID == panda_id)).scalar_one()


def submitted_and_activated(live, engine, user, n: int = 1) -> list[int]:
    ids = [int(out[0]) for out in submit(user, live.https_url, [signed_job() for _ in range(n)])]
    for pid in ids:
        force_status(engine, pid, "activated")
    return ids


def test_submitted_jobs_are_stored_with_a_signature_of_the_pki_key(live, clean_db, user):
    [pid] = [int(out[0]) for out in submit(user, live.https_url, [signed_job()])]
    signature = stored_signature(clean_db, pid)
    assert signature.split(":")[0] == signing.key_id(public_key(live))
    with clean_db.connect() as conn:
        [job] = rows.peek_jobs(conn, [pid])
    assert job.jobParameters == f"-c 'echo {pid:05d} > out.{pid:05d}'"  # signed after $PANDAID
    assert job.prodUserID == "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
    assert signing.verify(signing.fields_of_job(job), signature, public_key(live)).ok


@pytest.mark.parametrize("how, accept_json", [("form", False), ("gzjson", True)])
def test_get_job_reply_carries_a_signature_that_verifies(live, clean_db, user, pilot, how, accept_json):
    [pid] = submitted_and_activated(live, clean_db, user)
    out = reply(legacy(pilot, live.https_url, "getJob", how=how, accept_json=accept_json, siteName=ANALY_SITE,
                       prodSourceLabel="user"))  # fmt: skip
    assert str(out["StatusCode"]) == "0" and out["PandaID"] == str(pid)
    assert out["jobSignature"] == stored_signature(clean_db, pid)
    assert out["inFiles"] == "in.b.root,in.a.root"
    assert out["checksum"] == "ad:00000001,md5:" + "0" * 31 + "2"
    assert out["outFiles"] == f"out0.{pid:05d}.root,log.{pid:05d}.job.log.tgz"
    assert signing.verify_reply(out, public_key(live)).ok


def test_acquire_jobs_replies_carry_signatures_that_verify(live, clean_db, user, pilot):
    ids = submitted_and_activated(live, clean_db, user, n=2)
    body = {"site_name": ANALY_SITE, "prod_source_label": "user", "n_jobs": 5}
    r = v1(pilot, live.https_url, "pilot/acquire_jobs", body=body)
    assert r.status_code == 200, r.text[:500]
    jobs = r.json()["data"]["jobs"]
    assert sorted(int(j["PandaID"]) for j in jobs) == ids
    for job in jobs:
        assert job["jobSignature"] == stored_signature(clean_db, int(job["PandaID"]))
        assert signing.verify_reply(job, public_key(live)).ok


def test_a_job_changed_in_the_db_no_longer_verifies(live, clean_db, user, pilot):
    [pid] = submitted_and_activated(live, clean_db, user)
    with clean_db.begin() as conn:
        conn.execute(sa.update(t.jobparamstable).where(t.jobparamstable.c.PandaID == pid)
                     .values(jobParameters="-c 'touch /tmp/owned'"))  # fmt: skip
    out = reply(legacy(pilot, live.https_url, "getJob", siteName=ANALY_SITE, prodSourceLabel="user"))
    assert out["PandaID"] == str(pid) and out["jobPars"] == "-c 'touch /tmp/owned'"
    verdict = signing.verify_reply(out, public_key(live))
    assert not verdict.ok and verdict.reason.startswith(CHANGED)


@pytest.mark.parametrize(
    "file_type, column, value",
    [
        ("input", "GUID", "guid-of-another-replica"),
        ("input", "scope", "user.mallory"),
        ("input", "checksum", "ad:ffffffff"),
        ("input", "md5sum", "f" * 32),  # the md5-only input
        ("output", "lfn", "elsewhere.root"),
        ("output", "scope", "user.mallory"),
        ("output", "dataset", "user.mallory.results"),
        ("log", "lfn", "log.tgz"),
        ("log", "GUID", "another-log-guid"),
        ("log", "dataset", "user.mallory.logs"),
    ],
)
def test_a_file_changed_in_the_db_no_longer_verifies(live, clean_db, user, pilot, file_type, column, value):
    [pid] = submitted_and_activated(live, clean_db, user)
    f = t.filestable4
    with clean_db.begin() as conn:
        changed = conn.execute(sa.update(f).where(f.c.PandaID == pid, f.c.type == file_type,
                                                  getattr(f.c, column).is_not(None))
                               .values({column: value}))  # fmt: skip
        assert changed.rowcount >= 1
    out = reply(legacy(pilot, live.https_url, "getJob", siteName=ANALY_SITE, prodSourceLabel="user"))
    assert out["PandaID"] == str(pid)
    verdict = signing.verify_reply(out, public_key(live))
    assert not verdict.ok and verdict.reason.startswith(CHANGED)


def test_a_changed_transfer_type_no_longer_verifies(live, clean_db, user, pilot):
    [pid] = submitted_and_activated(live, clean_db, user)
    force_status(clean_db, pid, "activated", transferType="direct")
    out = reply(legacy(pilot, live.https_url, "getJob", siteName=ANALY_SITE, prodSourceLabel="user"))
    assert out["PandaID"] == str(pid) and out["transferType"] == "direct"
    assert signing.verify_reply(out, public_key(live)).reason.startswith(CHANGED)


def test_site_dependent_fields_changed_after_submission_still_verify(live, clean_db, user, pilot):
    """Dispatch and destination blocks and SEs are decided per site after submission (Setupper,
    brokerage): they are not signed."""
    [pid] = submitted_and_activated(live, clean_db, user)
    f = t.filestable4
    with clean_db.begin() as conn:
        conn.execute(sa.update(f).where(f.c.PandaID == pid).values(
            dispatchDBlock="panda.dis.999", destinationDBlock="user.jane.out_sub999", destinationSE="OTHER_SE"))  # fmt: skip
    force_status(clean_db, pid, "activated", destinationSE="OTHER_SE")
    out = reply(legacy(pilot, live.https_url, "getJob", siteName=ANALY_SITE, prodSourceLabel="user"))
    assert out["PandaID"] == str(pid) and out["dispatchDblock"] == "panda.dis.999,panda.dis.999"
    assert out["destinationSE"] == "OTHER_SE"
    assert signing.verify_reply(out, public_key(live)).ok


def test_a_reassigned_job_still_verifies(live, clean_db, user, pilot):
    """reassignJobs keeps the job (same PandaID, parameters, inputs), so its signature stays valid."""
    [pid] = submitted_and_activated(live, clean_db, user)
    assert json_text(legacy(user, live.https_url, "reassignJobs", ids=json.dumps([pid]))) == [True]
    force_status(clean_db, pid, "activated")
    out = reply(legacy(pilot, live.https_url, "getJob", siteName=ANALY_SITE, prodSourceLabel="user"))
    assert out["PandaID"] == str(pid)
    assert signing.verify_reply(out, public_key(live)).ok


@pytest.mark.parametrize("secure", [False, True])
def test_public_key_is_served_passively(live, secure, anonymous):
    base = live.https_url if secure else live.http_url
    r = anonymous.get(f"{base}/cache/jobsign-pub.pem", timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.content == live.pki.jobsign_pub.read_bytes()
    assert r.headers["Content-Type"].startswith("application/x-pem-file")


def test_a_missing_signing_key_is_a_clear_error(tmp_path):
    with pytest.raises(PandaError) as info:
        store._load_key(tmp_path / "private" / "jobsign-key.pem")
    assert "cannot sign jobs: cannot read the job-signing key" in info.value.message
    assert "panda-ca init" in info.value.message
    assert info.value.http_status == 500
