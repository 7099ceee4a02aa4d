"""Job recovery and the server's watchdog with real pilots.

* Stage-out fails on the first pilot (the XRootD storage element is down): the job is reported
  `holding` and its dir kept in the queue's recoverdir; once the storage is back, a second pilot
  recovers it (stage-out + final update) and the job finishes. Without storage, recovery gives
  up after --recovery-attempts with 1158.
* A pilot killed with SIGKILL mid-job: the watcher fails the job with 100 once the (shortened)
  heartbeat timeout has passed; a job dispatched but never acknowledged gets 102.
"""

from __future__ import annotations

import datetime as dt
import os
import signal

import pytest

from panda_server.db.localpg import free_port
from panda_server.jobdispatcher import watcher
from panda_server.settings import Settings
from pilot import workdir as workdir_mod
from pilot.infosys import rucio_path
from pilot.server import Server
from tests.support import pilots
from tests.support.dbjobs import insert_job
from tests.support.xrootd import running_xrootd

SE_DIR = "pandase"


@pytest.fixture
def down_se(engine, schedconfig_loaded, workdir, request):
    """A queue whose XRootD SE is not running yet (start it with running_xrootd(base, port))."""
    base, port = workdir / f"se-{request.node.name}", free_port()
    recoverdir = workdir / f"recover-{request.node.name}"
    queue = f"REC_{os.urandom(3).hex().upper()}"
    pilots.add_queue(engine, queue, se_path=f"root://127.0.0.1:{port}//{SE_DIR}", copytool="xrdcp",
                     copytoolin="xrdcp", recoverdir=str(recoverdir))  # fmt: skip
    yield queue, base, port, recoverdir
    pilots.add_queue(engine, queue, status="offline", se_path=f"root://127.0.0.1:{port}//{SE_DIR}")


def _first_pilot_leaves_the_job(live, engine, queue, workdir, recoverdir) -> tuple[int, str]:
    out = f"out.{os.urandom(4).hex()}.dat"
    pid = pilots.insert_activated(engine, pilots.shell_job(queue, f"echo recovered > {out}", outputs=[out]))
    proc = pilots.run_pilot(live, queue, workdir / "pilot1", "--transfer-attempts", "2")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "job dir kept for job recovery" in proc.stdout
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("holding", 1137), row["pilotErrorDiag"]
    assert (recoverdir / f"PanDA_Pilot-{pid}").is_dir(), "job dir moved to the queue's recoverdir"
    return pid, out


def test_second_pilot_recovers_a_job_whose_stageout_failed(live, engine, workdir, down_se):
    queue, base, port, recoverdir = down_se
    pid, out = _first_pilot_leaves_the_job(live, engine, queue, workdir, recoverdir)
    with running_xrootd(base, port) as se:
        proc = pilots.run_pilot(live, queue, workdir / "pilot2", "--recovery-age", "0")
        assert f"PandaID={pid} recovered: finished" in proc.stderr, proc.stderr[-3000:]
        pilots.run_adder(engine)
        row = pilots.job_row(engine, pid)
        assert row["jobStatus"] == "finished"
        data = se.path(f"/{SE_DIR}/{rucio_path('test', out)}").read_bytes()
        assert data == b"recovered\n"
        assert pilots.file_rows(engine, pid)[out]["fsize"] == len(data)
    assert not (recoverdir / f"PanDA_Pilot-{pid}").exists(), "recovered job dir removed"


def test_recovery_gives_up_after_the_configured_attempts(live, engine, workdir, down_se):
    queue, _base, _port, recoverdir = down_se
    pid, _out = _first_pilot_leaves_the_job(live, engine, queue, workdir, recoverdir)
    args = ("--recovery-age", "0", "--recovery-attempts", "1", "--transfer-attempts", "1")
    pilots.run_pilot(live, queue, workdir / "pilot2", *args)  # attempt 1: storage still down
    assert pilots.job_row(engine, pid)["jobStatus"] == "holding"
    proc = pilots.run_pilot(live, queue, workdir / "pilot3", *args)  # attempt 2 > 1: give up
    assert f"PandaID={pid} recovered: failed (pilotErrorCode=1158)" in proc.stderr, proc.stderr[-3000:]
    pilots.run_adder(engine)
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("failed", 1158)


def test_recovery_leaves_jobs_the_server_no_longer_holds(live, engine, workdir, down_se):
    queue, _base, _port, recoverdir = down_se
    pid, _out = _first_pilot_leaves_the_job(live, engine, queue, workdir, recoverdir)
    user = live.session(live.pki.user_proxy)
    assert user.post(
        f"{live.https_url}/server/panda/killJobs", data={"ids": f"[{pid}]"}, timeout=30
    ).json() == [True]
    assert pilots.job_row(engine, pid)["jobStatus"] == "cancelled"  # a holding job is cancelled at once
    proc = pilots.run_pilot(live, queue, workdir / "pilot2", "--recovery-age", "0")
    assert f"PandaID={pid} is cancelled (attempt 1) at the server, not holding" in proc.stderr, proc.stderr[
        -2000:
    ]
    assert not (recoverdir / f"PanDA_Pilot-{pid}").exists(), "the left job dir is cleaned up"
    assert pilots.job_row(engine, pid)["jobStatus"] == "cancelled"


def test_recent_job_dir_is_not_recovered_before_its_age(live, engine, workdir, down_se):
    queue, _base, _port, recoverdir = down_se
    pid, _out = _first_pilot_leaves_the_job(live, engine, queue, workdir, recoverdir)
    pilots.run_pilot(live, queue, workdir / "pilot2", "--recovery-age", "3600")
    assert (recoverdir / f"PanDA_Pilot-{pid}").is_dir()
    assert pilots.job_row(engine, pid)["jobStatus"] == "holding"


def test_killed_pilot_is_caught_by_the_watcher(live, engine, workdir):
    queue = "ANALY_CLOUDA_T1"
    pidfile = workdir / f"payload-{os.urandom(3).hex()}.pid"
    job = pilots.shell_job(queue, f"echo $$ > {pidfile}; sleep 120", label="user")
    pid = pilots.insert_activated(engine, job)
    proc = pilots.start_pilot(live, queue, workdir / "killed", log=workdir / "killed.log")
    payload_pid = None
    try:
        payload_pid = int(
            pilots.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "payload start")
        )
        pilots.wait_for(lambda: pilots.job_row(engine, pid)["jobStatus"] == "running", 30, "running")
        os.killpg(proc.pid, signal.SIGKILL)  # the pilot and its job wrapper, mid-job
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if payload_pid:  # the payload runs in its own session: end it ourselves
            os.kill(payload_pid, signal.SIGKILL)
    settings = Settings(watcher_heartbeat_timeout_analysis=2.0)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert watcher.run_once(engine, settings, now).lost_failed == 0, "not before the timeout"
    summary = watcher.run_once(engine, settings, now + dt.timedelta(seconds=5))
    assert summary.lost_failed == 1
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["jobDispatcherErrorCode"]) == ("failed", 100)


def test_job_never_acknowledged_after_sent_gets_102(live, engine):
    pid = pilots.insert_activated(engine, pilots.shell_job("CLOUDA_T2_1", "true"))
    server = Server(live.https_url, proxy=str(live.pki.pilot_proxy), ca_dir=str(live.ca_dir))
    reply = server.get_job({"siteName": "CLOUDA_T2_1", "computingElement": "CLOUDA_T2_1",
                            "prodSourceLabel": "managed", "node": "test"})  # fmt: skip
    server.close()
    assert int(reply["PandaID"]) == pid  # dispatched; the "pilot" never reports
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    summary = watcher.run_once(engine, Settings(), now + dt.timedelta(minutes=31))
    assert summary.sent_failed == 1
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["jobDispatcherErrorCode"]) == ("failed", 102)


def test_final_update_that_never_arrived_is_sent_by_a_later_pilot(live, engine, workdir):
    """The server still shows the job running (its heartbeat timeout has not passed): a later
    pilot finds the left job dir with the finished result and delivers the final update."""
    queue = "CLOUDA_T1"
    job = pilots.shell_job(queue, "true")
    with engine.begin() as conn:
        pid = insert_job(conn, "running", job=job)
    log = job.Files[-1]
    base = workdir / f"undelivered-{pid}"
    jobdir = base / "PanDA_Pilot_1_1" / f"PanDA_Pilot-{pid}"
    jobdir.mkdir(parents=True)
    workdir_mod.write_json(jobdir / "job.json", {
        "PandaID": str(pid), "attemptNr": "1", "prodSourceLabel": "managed", "transformation": "/bin/true",
        "jobPars": "", "outFiles": log.lfn, "logFile": log.lfn, "logGUID": log.GUID, "scopeLog": "test",
        "realDatasets": "test.log", "ddmEndPointOut": "CLOUDA_T1_DATADISK"})  # fmt: skip
    report = {log.lfn: {"guid": log.GUID, "fsize": 1234, "adler32": "0badc0de", "endpoint": "CLOUDA_T1_DATADISK",
                        "surl": f"file://localhost/{log.lfn}"}}  # fmt: skip
    workdir_mod.update_state(jobdir, PandaID=pid, attemptNr=1, queue=queue, phase="done",
                             result={"state": "finished", "pilotErrorCode": 0, "transExitCode": 0, "xml": report})  # fmt: skip
    proc = pilots.run_pilot(live, queue, base, "--recovery-age", "0")
    assert f"PandaID={pid} recovered: finished" in proc.stderr, proc.stderr[-3000:]
    assert not jobdir.exists()
    pilots.run_adder(engine)
    row = pilots.job_row(engine, pid)
    assert row["jobStatus"] == "finished"
    assert pilots.file_rows(engine, pid)[log.lfn]["fsize"] == 1234
