"""Signed job specifications, end to end: a job submitted over HTTPS is signed by the server and
verified by our pilot before anything runs; a job changed in the database after submission, or
one without a signature, is refused with 1390 BADJOBSIGNATURE and its payload never starts. On a
queue with identity switching (glexec) an unsigned job is refused even with --unsigned-jobs allow.

Jobs are submitted with the classic client API (Jane's proxy, label `test`, which the production
queue CLOUDA_T1 runs), activated by the Setupper, then taken by `python -m pilot`.
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from client import api
from client.config import ClientConfig
from panda_server.dataservice import setupper
from panda_server.db import tables as t
from panda_server.protocol import signing
from panda_server.settings import Settings
from tests.support import pilots

QUEUE = "CLOUDA_T1"
GLEXEC_QUEUE = "SIGNED_GLEXEC_T2"
CHANGED = "signature does not match: the job specification was changed after submission"


def submit_activated(live, engine, script: str) -> int:
    """Submit a /bin/bash -c job over HTTPS as Jane, and let the Setupper activate it."""
    config = ClientConfig(url=f"{live.http_url}/server/panda", url_ssl=f"{live.https_url}/server/panda",
                          proxy=str(live.pki.user_proxy), ca_dir=str(live.ca_dir))  # fmt: skip
    status, out = api.submitJobs([pilots.shell_job(QUEUE, script, label="test")], config)
    assert status == 0, out
    assert setupper.run_once(engine, Settings(), dt.datetime.now(dt.UTC).replace(tzinfo=None)).activated == 1
    return int(out[0][0])


def set_params(engine, panda_id: int, **values) -> None:
    """Change jobparamstable behind the server's back, as somebody with DB access could."""
    p = t.jobparamstable
    with engine.begin() as conn:
        assert conn.execute(sa.update(p).where(p.c.PandaID == panda_id).values(**values)).rowcount == 1


def assert_refused(engine, proc, panda_id: int, reason: str) -> dict:
    """The pilot reported the job failed with 1390 at once (no job dir, no payload), then the
    Adder finished it off as failed."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = re.search(rf"pilot: PandaID={panda_id} failed pilotErrorCode=1390 diag=.*", proc.stdout)
    assert line and reason in line.group(0), proc.stdout
    assert f"PandaID={panda_id} got job" not in proc.stderr  # the job dir and wrapper never came
    row = pilots.job_row(engine, panda_id)
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("holding", 1390), row
    pilots.run_adder(engine)
    row = pilots.job_row(engine, panda_id)
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("failed", 1390)
    assert reason in row["pilotErrorDiag"]
    return row


def test_a_submitted_job_is_verified_and_runs(live, engine, pilot_dir):
    marker = pilot_dir / "ran"
    pid = submit_activated(live, engine, f"touch {marker}")
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(rf"PandaID={pid} finished pilotErrorCode=0", proc.stdout), proc.stdout
    kid = signing.key_id(signing.load_public_key(live.pki.jobsign_pub.read_bytes(), "pub"))
    assert f"jobs are verified with key {kid} from {live.https_url}/cache/jobsign-pub.pem" in proc.stderr
    assert f"PandaID={pid} specification verified (key {kid})" in proc.stderr
    assert marker.exists()
    pilots.run_adder(engine)
    assert pilots.job_row(engine, pid)["jobStatus"] == "finished"


def test_a_pinned_key_of_this_server_verifies_too(live, engine, pilot_dir):
    pid = submit_activated(live, engine, "true")
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--job-key", str(live.pki.jobsign_pub))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"from {live.pki.jobsign_pub}" in proc.stderr
    assert re.search(rf"PandaID={pid} finished pilotErrorCode=0", proc.stdout), proc.stdout


def test_parameters_changed_in_the_db_are_refused_and_never_run(live, engine, pilot_dir):
    marker = pilot_dir / "owned"
    pid = submit_activated(live, engine, "echo harmless")
    set_params(engine, pid, jobParameters=f"-c 'touch {marker}'")
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    assert_refused(engine, proc, pid, CHANGED)
    assert not marker.exists(), "the changed payload must never start"
    assert f"PandaID={pid} refused: {CHANGED}" in proc.stderr  # with the digests of what came
    assert not list(pilot_dir.glob("PanDA_Pilot_*")), "no job dir was made; the pilot home is gone"


def test_a_file_changed_in_the_db_is_refused(live, engine, pilot_dir):
    """The log's dataset decides where the results go: it is signed like the job's parameters."""
    marker = pilot_dir / "ran"
    pid = submit_activated(live, engine, f"touch {marker}")
    f = t.filestable4
    with engine.begin() as conn:
        changed = conn.execute(sa.update(f).where(f.c.PandaID == pid, f.c.type == "log")
                               .values(dataset="user.mallory.logs"))  # fmt: skip
        assert changed.rowcount == 1
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    assert_refused(engine, proc, pid, CHANGED)
    assert not marker.exists()


def test_an_unsigned_job_is_refused(live, engine, pilot_dir):
    marker = pilot_dir / "ran"
    pid = submit_activated(live, engine, f"touch {marker}")
    set_params(engine, pid, jobSignature=None)  # e.g. stored before the server signed jobs
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    row = assert_refused(engine, proc, pid, "no signature")
    assert "--unsigned-jobs allow" in row["pilotErrorDiag"]
    assert not marker.exists()


def test_an_unsigned_job_runs_with_unsigned_jobs_allow(live, engine, pilot_dir):
    marker = pilot_dir / "ran"
    pid = submit_activated(live, engine, f"touch {marker}")
    set_params(engine, pid, jobSignature=None)
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--unsigned-jobs", "allow")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PandaID={pid} has no signature; running it because of --unsigned-jobs allow" in proc.stderr
    assert marker.exists()


def test_an_unsigned_job_is_refused_on_a_glexec_queue_even_with_unsigned_jobs_allow(live, engine, pilot_dir):
    """There the payload's account is chosen by prodUserID, which only a signature vouches for."""
    se = pilot_dir / "se"
    se.mkdir()
    pilots.add_queue(engine, GLEXEC_QUEUE, se_path=str(se), copytool="cp", glexec=True)
    marker = pilot_dir / "ran"
    pid = pilots.insert_activated(engine, pilots.shell_job(GLEXEC_QUEUE, f"touch {marker}"))
    set_params(engine, pid, jobSignature=None)
    proc = pilots.run_pilot(live, GLEXEC_QUEUE, pilot_dir / "work", "--unsigned-jobs", "allow")
    row = assert_refused(engine, proc, pid, "no signature")
    assert "unsigned jobs are refused whatever --unsigned-jobs says" in row["pilotErrorDiag"]
    assert "running it because of --unsigned-jobs allow" not in proc.stderr
    assert not marker.exists()


def test_a_changed_job_is_refused_even_with_unsigned_jobs_allow(live, engine, pilot_dir):
    marker = pilot_dir / "owned"
    pid = submit_activated(live, engine, "true")
    set_params(engine, pid, jobParameters=f"-c 'touch {marker}'")
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--unsigned-jobs", "allow")
    assert_refused(engine, proc, pid, CHANGED)
    assert not marker.exists()


def test_a_pinned_key_of_another_server_refuses_with_both_key_ids(live, engine, pilot_dir):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pub = pilot_dir / "other-pub.pem"
    other_pub.write_bytes(other.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    marker = pilot_dir / "ran"
    pid = submit_activated(live, engine, f"touch {marker}")
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--job-key", str(other_pub))
    server_kid = signing.key_id(signing.load_public_key(live.pki.jobsign_pub.read_bytes(), "pub"))
    assert_refused(
        engine, proc, pid, f"signed by another key {server_kid}, not by key {signing.key_id(other)}"
    )
    assert not marker.exists()


def test_an_unreadable_pinned_key_stops_the_pilot_before_it_takes_a_job(live, engine, pilot_dir):
    pid = submit_activated(live, engine, "true")
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--job-key", str(pilot_dir / "missing.pem"))
    assert proc.returncode == 1
    assert f"pilot: cannot verify jobs: cannot read --job-key {pilot_dir / 'missing.pem'}" in proc.stderr
    assert pilots.job_row(engine, pid)["jobStatus"] == "activated", "the job stays for another pilot"
