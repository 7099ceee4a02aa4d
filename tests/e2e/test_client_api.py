"""Our classic Client API against the real server over mTLS, and a whole no-input lifecycle."""

from __future__ import annotations

import datetime as dt

from client import api
from client.config import ClientConfig
from panda_server.dataservice import adder, setupper
from panda_server.protocol.transport import PandaSession
from panda_server.settings import Settings
from tests.support.jobs import simple_job

NOW = dt.datetime(2026, 11, 24, 12, 0, 0)


def config(server, proxy):
    return ClientConfig(url=f"{server.http_url}/server/panda", url_ssl=f"{server.https_url}/server/panda",
                        proxy=str(proxy), ca_dir=str(server.ca_dir))  # fmt: skip


def test_config_reads_the_classic_environment():
    c = ClientConfig.from_env({"PANDA_URL": "http://h:1/server/panda", "PANDA_URL_SSL": "https://h:2/server/panda",
                               "X509_USER_PROXY": "/p", "X509_CERT_DIR": "/ca"})  # fmt: skip
    assert (c.url, c.url_ssl, c.proxy, c.ca_dir) == (
        "http://h:1/server/panda",
        "https://h:2/server/panda",
        "/p",
        "/ca",
    )
    assert ClientConfig.base(c.url_ssl) == "https://h:2"


def test_submit_status_kill_reassign_query(live):
    user = config(live, live.pki.user_proxy)
    status, out = api.submitJobs([simple_job(label="user"), simple_job(label="user")], user)
    assert status == 0 and len(out) == 2
    ids = [pid for pid, _, _ in out]
    assert out[0][1] == out[1][1]  # one submission → one jobDefinitionID

    status, jobs = api.getJobStatus([*ids, 424242], user)
    assert status == 0 and jobs[2] is None
    assert [j.jobStatus for j in jobs[:2]] == ["defined", "defined"]
    assert jobs[0].prodUserID == "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
    assert jobs[0].Files[0].lfn == f"log.{ids[0]:05d}.job.log.tgz"
    assert isinstance(jobs[0].creationTime, dt.datetime)

    assert api.reassignJobs([ids[0]], user) == (0, [True])
    assert api.killJobs([ids[1]], config=user) == (0, [True])
    assert api.killJobs([ids[1]], config=user) == (0, [False])  # already cancelled
    _, jobs = api.getJobStatus(ids, user)
    assert [j.jobStatus for j in jobs] == ["defined", "cancelled"]
    assert jobs[1].taskBufferErrorCode == 100 and "Jane Doe" in jobs[1].taskBufferErrorDiag
    assert api.queryPandaIDs([out[0][1]], user) == (0, [None])  # user jobs are not managed


def test_client_reports_failure_without_raising(live, tmp_path):
    bad = ClientConfig(url="http://127.0.0.1:9/server/panda", url_ssl="https://127.0.0.1:9/server/panda",
                       proxy=str(live.pki.user_proxy), ca_dir=str(live.ca_dir))  # fmt: skip
    assert api.getJobStatus([1], bad) == (255, None)
    # a proxy file that does not exist: the transport fails cleanly, status 255, no exception
    no_proxy = config(live, tmp_path / "missing.proxy")
    assert api.killJobs([1], config=no_proxy)[0] == 255


def test_full_lifecycle_through_the_wire(live, engine):
    """submit → setupper → getJob → starting → running → finished → adder → archived."""
    user = config(live, live.pki.user_proxy)
    _, out = api.submitJobs([simple_job(site="CLOUDA_T1", label="test", outputs=1)], user)
    panda_id = out[0][0]
    assert setupper.run_once(engine, Settings(), NOW).activated == 1

    pilot = PandaSession(url=live.http_url, url_ssl=live.https_url, proxy=str(live.pki.pilot_proxy),
                         ca=str(live.ca_dir))  # fmt: skip
    job = pilot.legacy("getJob", {"siteName": "CLOUDA_T1", "prodSourceLabel": "test", "node": "wn1",
                                  "mem": "2000", "diskSpace": "20000"}, gzip_json=True)  # fmt: skip
    assert job["StatusCode"] == "0" and int(job["PandaID"]) == panda_id
    lfns = job["outFiles"].split(",")
    guids = {job["logFile"]: job["logGUID"]}
    for state in ("starting", "running"):
        reply = pilot.legacy("updateJob", {"jobId": panda_id, "state": state, "node": "wn1"})
        assert reply == {"StatusCode": "0", "command": "NULL"}
    report = {
        lfn: {"guid": guids.get(lfn), "fsize": 100 + i, "adler32": "0a0b0c0d"} for i, lfn in enumerate(lfns)
    }
    import json

    reply = pilot.legacy("updateJob", {"jobId": panda_id, "state": "finished", "xml": json.dumps(report),
                                       "pilotErrorCode": "0", "transExitCode": "0"}, as_json=True)  # fmt: skip
    assert reply == {"StatusCode": 0, "command": "NULL"}
    assert api.getJobStatus([panda_id], user)[1][0].jobStatus == "holding"
    assert adder.run_once(engine, Settings(), NOW).finished == 1
    final = api.getJobStatus([panda_id], user)[1][0]
    assert final.jobStatus == "finished" and final.modificationHost == "wn1"
    assert {f.status for f in final.Files} == {"ready"}
    assert pilot.legacy("updateJob", {"jobId": panda_id, "state": "running"})["command"] == "tobekilled"
