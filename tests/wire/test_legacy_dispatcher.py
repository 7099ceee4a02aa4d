"""The pilot's legacy surface over real mTLS: getJob, updateJob, getStatus, checkJobStatus.

Each behaviour is checked the way a pilot sees it (the reply it parses) and, where the reply is
not enough, in the DB the server wrote.
"""

from __future__ import annotations

import concurrent.futures
import json

import pytest
import sqlalchemy as sa

from panda_server.db import tables as t
from tests.support.jobs import simple_job
from tests.wire.helpers import (
    OTHER_DN,
    USER_DN,
    activated,
    force_status,
    job_row,
    legacy,
    reply,
    rich_job,
    scalar,
    urlencoded,
)

ENCODINGS = ("form", "get", "gzjson")
SITE = "CLOUDA_T1"


def get_job(session, live, *, how="form", accept_json=False, **params):
    params.setdefault("siteName", SITE)
    return reply(legacy(session, live.https_url, "getJob", how=how, accept_json=accept_json, **params))


def update(session, live, panda_id, state, *, how="form", accept_json=False, **params):
    r = legacy(session, live.https_url, "updateJob", how=how, accept_json=accept_json, jobId=panda_id,
               state=state, **params)  # fmt: skip
    return reply(r)


def drain(session, live, limit=20, **params):
    """PandaIDs a pilot gets, one getJob at a time, until no jobs (bounded)."""
    got = []
    for _ in range(limit):
        out = get_job(session, live, **params)
        if str(out["StatusCode"]) == "20":
            return got
        assert str(out["StatusCode"]) == "0", out
        got.append(int(out["PandaID"]))
    raise AssertionError(f"more than {limit} jobs dispatched: {got}")


def running_job(live, engine, pilot, **attrs):
    """A job a pilot has taken and reported running."""
    [pid] = activated(engine, [simple_job(SITE, **attrs)])
    assert get_job(pilot, live)["PandaID"] == str(pid)
    assert update(pilot, live, pid, "running") == {"StatusCode": "0", "command": "NULL"}
    return pid


# --- getJob ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ENCODINGS)
def test_get_job_without_jobs_answers_status_20_urlencoded(live, pilot, how):
    r = legacy(pilot, live.https_url, "getJob", how=how, siteName=SITE, prodSourceLabel="managed")
    out = urlencoded(r)
    assert out["StatusCode"] == "20"


def test_get_job_without_jobs_answers_json_with_error_dialog_when_json_accepted(live, pilot):
    r = legacy(pilot, live.https_url, "getJob", accept_json=True, siteName=SITE)
    assert r.headers["Content-Type"].startswith("application/json")
    out = r.json()
    assert out["StatusCode"] == 20
    assert out["errorDialog"] == "no jobs in PanDA"


@pytest.mark.parametrize("how", ENCODINGS)
def test_get_job_reply_has_every_field_with_aligned_comma_lists(live, clean_db, pilot, how):
    [pid] = activated(clean_db, [rich_job(SITE, maxCpuCount=3600, minRamCount=1000, maxDiskCount=500)])
    out = get_job(pilot, live, how=how, prodSourceLabel="managed", node="wn01.example.org", mem=2000,
                  diskSpace=1000, computingElement="CLOUDA_T1-ce")  # fmt: skip
    expected = {
        "StatusCode", "PandaID", "prodSourceLabel", "swRelease", "homepackage", "transformation", "jobName",
        "jobDefinitionID", "cloud", "inFiles", "dispatchDblock", "dispatchDBlockToken", "prodDBlocks",
        "prodDBlockToken", "realDatasetsIn", "GUID", "fsize", "checksum", "scopeIn", "ddmEndPointIn",
        "outFiles", "destinationDblock", "destinationDBlockToken", "dispatchDBlockTokenForOut",
        "prodDBlockTokenForOutput", "realDatasets", "fileDestinationSE", "ddmEndPointOut", "scopeOut",
        "scopeLog", "logFile", "logGUID", "jobPars", "attemptNr", "destinationSE", "prodUserID",
        "maxCpuCount", "minRamCount", "maxDiskCount", "maxWalltime", "cmtConfig", "processingType",
        "transferType", "sourceSite", "currentPriority", "taskID", "jobsetID", "nucleus", "coreCount",
        "reqID", "resource_type", "container_name", "nSent",
    }  # fmt: skip
    assert expected <= set(out), expected - set(out)
    assert out["StatusCode"] == "0" and out["PandaID"] == str(pid)
    stamp = f"{pid:05d}"
    # inputs: aligned by position
    assert out["inFiles"] == "in0.root,in1.root"
    assert out["dispatchDblock"] == "panda.dis0,panda.dis1"
    assert out["realDatasetsIn"] == "data.in0,data.in1"
    assert out["prodDBlocks"] == "data.in0,data.in1"
    assert out["fsize"] == "1000,1001"
    assert out["checksum"] == "ad:00000000,ad:00000001"
    assert out["scopeIn"] == "scope_in0,scope_in1"
    assert out["ddmEndPointIn"] == "CLOUDA_T1_DATADISK,CLOUDA_T1_DATADISK"
    assert len(out["GUID"].split(",")) == 2 and "NULL" not in out["GUID"]
    # outputs: the log is the last of outFiles, every per-output list has the same length
    assert out["outFiles"] == f"out0.{stamp}.root,out1.{stamp}.root,log.{stamp}.tgz"
    assert out["realDatasets"] == "data.out0,data.out1,data.log"
    assert out["destinationDblock"] == "data.out0_sub01,data.out1_sub01,data.log_sub01"
    assert out["destinationDBlockToken"] == "TOKEN0,TOKEN1,LOGTOKEN"
    assert out["fileDestinationSE"] == ",".join([SITE] * 3)
    assert out["ddmEndPointOut"] == ",".join(["CLOUDA_T1_DATADISK"] * 3)
    assert out["dispatchDBlockTokenForOut"] == "NULL,NULL,NULL"
    # scopeOut lists the outputs only; the log's scope comes in scopeLog
    assert out["scopeOut"] == "scope_out0,scope_out1"
    assert out["scopeLog"] == "scope_log"
    assert out["logFile"] == f"log.{stamp}.tgz"
    assert out["logGUID"] != "NULL"
    # job attributes, NULL where unset
    assert out["jobPars"] == "hello"
    assert out["transformation"] == "/bin/echo"
    assert out["prodUserID"] == USER_DN
    assert out["prodSourceLabel"] == "managed"
    assert (out["maxCpuCount"], out["minRamCount"], out["maxDiskCount"]) == ("3600", "1000", "500")
    assert out["attemptNr"] == "1" and out["destinationSE"] == SITE
    for unset in ("homepackage", "cmtConfig", "processingType", "taskID", "transferType", "nucleus"):
        assert out[unset] == "NULL", unset
    assert out["nSent"] == "1"  # this very job, just sent
    # the claim is in the DB: sent, with the pilot's node and CE
    table, row = job_row(clean_db, pid)
    assert (table, row["jobStatus"]) == ("jobsactive4", "sent")
    assert row["modificationHost"] == "wn01.example.org"
    assert row["computingElement"] == "CLOUDA_T1-ce"


def test_get_job_reply_is_json_when_json_accepted(live, clean_db, pilot):
    [pid] = activated(clean_db, [simple_job(SITE)])
    r = legacy(pilot, live.https_url, "getJob", how="gzjson", accept_json=True, siteName=SITE)
    out = r.json()
    assert out["StatusCode"] == 0
    assert out["PandaID"] == str(pid)
    assert out["logFile"] == f"log.{pid:05d}.job.log.tgz"


def test_get_job_without_site_name_is_an_error(live, pilot):
    out = reply(legacy(pilot, live.https_url, "getJob", prodSourceLabel="managed"))
    assert out["StatusCode"] == "30"
    assert "siteName" in out["errorDialog"]
    out = reply(legacy(pilot, live.https_url, "getJob", accept_json=True, siteName="NULL"))
    assert out["StatusCode"] == 30 and "siteName" in out["errorDialog"]


def test_get_job_with_bad_numbers_is_an_error(live, pilot):
    out = get_job(pilot, live, mem="lots")
    assert out["StatusCode"] == "30" and "mem" in out["errorDialog"]


def test_get_job_only_matches_its_site(live, clean_db, pilot):
    [pid] = activated(clean_db, [simple_job(SITE)])
    assert get_job(pilot, live, siteName="CLOUDB_T1")["StatusCode"] == "20"
    assert job_row(clean_db, pid)[1]["jobStatus"] == "activated"
    assert get_job(pilot, live)["PandaID"] == str(pid)


LABELS = ("managed", "test", "prod_test", "install", "user", "panda", "ptest")


@pytest.mark.parametrize(
    ("pilot_label", "expected"),
    [
        (None, {"managed", "test", "prod_test", "install"}),
        ("managed", {"managed", "test", "prod_test", "install"}),
        ("user", {"user", "panda", "install"}),
        ("test", {"test", "prod_test", "install"}),
        ("unified", {"managed", "test", "prod_test", "install", "user", "panda"}),
        ("ptest", {"ptest"}),
    ],
)
def test_get_job_label_mapping(live, clean_db, pilot, pilot_label, expected):
    ids = activated(clean_db, [simple_job(SITE, label=label) for label in LABELS])
    by_id = dict(zip(ids, LABELS, strict=True))
    params = {} if pilot_label is None else {"prodSourceLabel": pilot_label}
    got = drain(pilot, live, **params)
    assert {by_id[i] for i in got} == expected
    assert len(got) == len(expected)


def test_get_job_memory_filter_zero_means_no_limit(live, clean_db, pilot):
    ids = activated(clean_db, [simple_job(SITE, minRamCount=ram) for ram in (0, 1000, 2000, 4000)])
    got = drain(pilot, live, mem=2000)
    assert sorted(got) == ids[:3]  # 0 = no requirement; 2000 <= 2000 fits; 4000 does not
    assert drain(pilot, live, mem=1000) == []
    assert drain(pilot, live, mem=0) == [ids[3]]  # a pilot saying 0 has no limit


def test_get_job_disk_filter_zero_means_no_limit(live, clean_db, pilot):
    ids = activated(clean_db, [simple_job(SITE, maxDiskCount=disk) for disk in (0, 500, 1000, 5000)])
    got = drain(pilot, live, diskSpace=1000)
    assert sorted(got) == ids[:3]
    assert drain(pilot, live) == [ids[3]]  # no diskSpace sent: no limit


def test_get_job_highest_priority_first_then_lowest_panda_id(live, clean_db, pilot):
    ids = activated(clean_db, [simple_job(SITE, priority=p) for p in (100, 300, 300, 200, 300)])
    assert drain(pilot, live) == [ids[1], ids[2], ids[4], ids[3], ids[0]]


def test_get_job_skips_jobs_with_a_command_for_the_pilot(live, clean_db, pilot):
    killed, fine = activated(clean_db, [simple_job(SITE, priority=500), simple_job(SITE, priority=1)])
    force_status(clean_db, killed, "activated", commandToPilot="tobekilled")
    assert drain(pilot, live) == [fine]
    assert job_row(clean_db, killed)[1]["jobStatus"] == "activated"


def test_get_job_without_pilot_role_is_refused_with_60(live, clean_db, user):
    """S25 (and issue 4): getJob needs the pilot or production role, even for the caller's own jobs."""
    mine = activated(clean_db, [simple_job(SITE, priority=1)], dn=USER_DN)
    out = get_job(user, live, prodUserID=USER_DN)
    assert out["StatusCode"] == "60" and "pilot or production role" in out["errorDialog"], out
    assert job_row(clean_db, mine[0])[1]["jobStatus"] == "activated"


def test_get_job_pilot_may_restrict_to_one_user(live, clean_db, pilot):
    [mine] = activated(clean_db, [simple_job(SITE, priority=1)], dn=USER_DN)
    [theirs] = activated(clean_db, [simple_job(SITE, priority=900)], dn=OTHER_DN)
    assert drain(pilot, live, prodUserID=USER_DN) == [mine]
    assert drain(pilot, live) == [theirs]


@pytest.mark.parametrize("how", ENCODINGS)
def test_get_job_bulk_urlencoded_carries_jobs_as_json_text(live, clean_db, pilot, how):
    ids = activated(clean_db, [simple_job(SITE) for _ in range(3)])
    out = get_job(pilot, live, how=how, nJobs=2)
    assert out["StatusCode"] == "0"
    jobs = json.loads(out["jobs"])
    assert [int(j["PandaID"]) for j in jobs] == ids[:2]
    assert all(j["logFile"].startswith("log.") for j in jobs)
    out = get_job(pilot, live, how=how, nJobs=5)
    assert [int(j["PandaID"]) for j in json.loads(out["jobs"])] == ids[2:]
    assert get_job(pilot, live, how=how, nJobs=5)["StatusCode"] == "20"


def test_get_job_bulk_json(live, clean_db, pilot):
    ids = activated(clean_db, [simple_job(SITE) for _ in range(3)])
    out = get_job(pilot, live, accept_json=True, how="gzjson", nJobs=3)
    assert out["StatusCode"] == 0
    assert [int(j["PandaID"]) for j in out["jobs"]] == ids


@pytest.mark.parametrize("n_jobs", ["0", "101", "many"])
def test_get_job_bulk_bounds(live, pilot, n_jobs):
    out = get_job(pilot, live, nJobs=n_jobs)
    assert out["StatusCode"] == "30" and "nJobs" in out["errorDialog"]


def test_get_job_queue_in_test_status_only_gives_test_jobs(live, clean_db, pilot):
    ids = activated(clean_db, [simple_job(SITE, label=label) for label in ("managed", "test")])
    with clean_db.begin() as conn:
        conn.execute(sa.update(t.schedconfig).where(t.schedconfig.c.siteid == SITE).values(status="test"))
    try:
        assert drain(pilot, live, prodSourceLabel="managed") == [ids[1]]
    finally:
        with clean_db.begin() as conn:
            conn.execute(
                sa.update(t.schedconfig).where(t.schedconfig.c.siteid == SITE).values(status="online")
            )


# --- updateJob ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ENCODINGS)
def test_update_job_lifecycle_to_holding_with_output_report(live, clean_db, pilot, how):
    [pid] = activated(clean_db, [simple_job(SITE, outputs=1)])
    assert get_job(pilot, live, how=how)["PandaID"] == str(pid)
    assert update(pilot, live, pid, "starting", how=how, attemptNr=1) == {
        "StatusCode": "0",
        "command": "NULL",
    }
    assert job_row(clean_db, pid)[1]["jobStatus"] == "starting"
    assert update(pilot, live, pid, "running", how=how, attemptNr=1) == {"StatusCode": "0", "command": "NULL"}
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"
    report = json.dumps({f"out0.{pid:05d}.root": {"guid": "g1", "fsize": 10, "adler32": "0badf00d"}})
    out = update(pilot, live, pid, "finished", how=how, attemptNr=1, xml=report, transExitCode=0,
                 cpuConsumptionTime=12)  # fmt: skip
    assert out == {"StatusCode": "0", "command": "NULL"}
    table, row = job_row(clean_db, pid)
    assert (table, row["jobStatus"]) == ("jobsactive4", "holding")  # the adder decides the rest
    assert row["endTime"] is not None and row["cpuConsumptionTime"] == 12
    r = t.job_output_report
    with clean_db.connect() as conn:
        saved = conn.execute(sa.select(r).where(r.c.PandaID == pid)).mappings().one()
    assert (saved["jobStatus"], saved["data"], saved["attemptNr"]) == ("finished", report, 1)
    # a repeated final report is acknowledged but changes nothing
    assert update(pilot, live, pid, "finished", how=how, xml=report)["command"] == "alreadydone"


def test_update_job_heartbeats_keep_the_state_and_store_metrics(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    before = job_row(clean_db, pid)[1]["modificationTime"]
    for cpu in (10, 20):
        out = update(
            pilot, live, pid, "running", cpuConsumptionTime=cpu, node="wn02", pilotID="p1|SLURM|x|3.7"
        )
        assert out == {"StatusCode": "0", "command": "NULL"}
    row = job_row(clean_db, pid)[1]
    assert row["jobStatus"] == "running"
    assert row["cpuConsumptionTime"] == 20
    assert row["modificationHost"] == "wn02" and row["pilotID"] == "p1|SLURM|x|3.7"
    assert row["modificationTime"] > before


def test_update_job_json_reply_when_json_accepted(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    r = legacy(pilot, live.https_url, "updateJob", how="gzjson", accept_json=True, jobId=pid, state="running")
    assert r.json() == {"StatusCode": 0, "command": "NULL"}


def test_update_job_json_booleans_become_true_false_strings(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    out = update(pilot, live, pid, "running", how="gzjson", node=True, pilotID=False)
    assert out["StatusCode"] == "0"
    row = job_row(clean_db, pid)[1]
    assert (row["modificationHost"], row["pilotID"]) == ("True", "False")


def test_update_job_unknown_job_is_told_to_stop(live, pilot):
    assert update(pilot, live, 987654321, "running") == {"StatusCode": "0", "command": "tobekilled"}


def test_update_job_of_a_killed_job_gets_tobekilled_on_next_heartbeat(live, clean_db, pilot, user):
    pid = running_job(live, clean_db, pilot)
    r = legacy(user, live.https_url, "killJobs", ids=json.dumps([pid]))
    assert r.json() == [True]
    assert update(pilot, live, pid, "running") == {"StatusCode": "0", "command": "tobekilled"}
    out = update(pilot, live, pid, "failed", pilotErrorCode=1144, pilotErrorDiag="killed by PanDA")
    assert out["StatusCode"] == "0"
    row = job_row(clean_db, pid)[1]
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("holding", 1144)


def test_update_job_of_an_archived_job_gets_tobekilled(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    force_status(clean_db, pid, "cancelled")
    assert update(pilot, live, pid, "running")["command"] == "tobekilled"
    assert job_row(clean_db, pid)[1]["jobStatus"] == "cancelled"


def test_update_job_with_a_stale_attempt_is_told_to_stop(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    force_status(clean_db, pid, "running", attemptNr=2)
    assert update(pilot, live, pid, "finished", attemptNr=1) == {"StatusCode": "0", "command": "tobekilled"}
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"
    assert update(pilot, live, pid, "running", attemptNr=2)["command"] == "NULL"


@pytest.mark.parametrize("state", ["bogus", "activated", "cancelled", ""])
def test_update_job_with_an_invalid_state_is_an_error(live, clean_db, pilot, state):
    pid = running_job(live, clean_db, pilot)
    out = update(pilot, live, pid, state)
    assert out["StatusCode"] == "30"
    assert "state" in out["errorDialog"]
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"


def test_update_job_without_pilot_role_is_refused_with_60(live, clean_db, pilot, user):
    pid = running_job(live, clean_db, pilot)
    assert update(user, live, pid, "finished")["StatusCode"] == "60"
    out = update(user, live, pid, "finished", accept_json=True)
    assert out["StatusCode"] == 60 and out["errorDialog"]
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"


def test_update_job_with_null_job_id_is_accepted(live, pilot):
    assert update(pilot, live, "NULL", "running")["StatusCode"] == "0"


@pytest.mark.parametrize("job_id", ["", "abc"])
def test_update_job_with_a_bad_job_id_is_an_error(live, pilot, job_id):
    out = update(pilot, live, job_id, "running")
    assert out["StatusCode"] == "30" and "jobId" in out["errorDialog"]


def test_update_job_stores_metadata_in_metatable(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    meta = json.dumps({"jobReport": {"exitCode": 0}})
    assert update(pilot, live, pid, "finished", metaData=meta)["StatusCode"] == "0"
    m = t.metatable
    assert scalar(clean_db, sa.select(m.c.metaData).where(m.c.PandaID == pid)) == meta


def test_update_job_maps_parameters_to_columns(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    diag = "x" * 800
    out = update(pilot, live, pid, "failed", node="wn03.example.org", coreCount=8, pilotErrorCode=-1201,
                 pilotErrorDiag=diag, exeErrorCode=3, exeErrorDiag="exe failed", transExitCode=65,
                 cpuConversionFactor=1.5, batchID="slurm-42", startTime="2026-01-02 03:04:05")  # fmt: skip
    assert out["StatusCode"] == "0"
    row = job_row(clean_db, pid)[1]
    assert row["jobStatus"] == "holding"
    assert row["modificationHost"] == "wn03.example.org"
    assert row["actualCoreCount"] == 8
    assert row["pilotErrorCode"] == 1201
    assert row["pilotErrorDiag"] == "x" * 500
    assert (row["exeErrorCode"], row["exeErrorDiag"], row["transExitCode"]) == (3, "exe failed", "65")
    assert row["cpuConversion"] == 1.5 and row["batchID"] == "slurm-42"
    assert row["startTime"].strftime("%Y-%m-%d %H:%M:%S") == "2026-01-02 03:04:05"


# --- getStatus / checkJobStatus -------------------------------------------------------------


@pytest.mark.parametrize("how", ENCODINGS)
def test_get_status_plus_separated_with_notfound(live, clean_db, pilot, how):
    pid = running_job(live, clean_db, pilot)
    [done] = activated(clean_db, [simple_job(SITE)])
    force_status(clean_db, done, "finished", attemptNr=3)
    r = legacy(pilot, live.https_url, "getStatus", how=how, ids=f"{pid} 987654321 {done}")
    out = urlencoded(r)
    assert out == {"StatusCode": "0", "status": "running+notfound+finished", "attemptNr": "1+0+3"}
    assert "%2B" in r.text  # '+' is data, not a space, on the wire


def test_get_status_is_urlencoded_even_when_json_is_accepted(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    out = urlencoded(legacy(pilot, live.https_url, "getStatus", accept_json=True, ids=str(pid)))
    assert out == {"StatusCode": "0", "status": "running", "attemptNr": "1"}


@pytest.mark.parametrize("ids", ["", "12 abc"])
def test_get_status_with_bad_ids_is_an_error(live, pilot, ids):
    out = urlencoded(legacy(pilot, live.https_url, "getStatus", ids=ids))
    assert out["StatusCode"] == "30" and "ids" in out["errorDialog"]


@pytest.mark.parametrize("accept_json", [False, True])
def test_check_job_status_is_json(live, clean_db, pilot, user, accept_json):
    pid = running_job(live, clean_db, pilot)
    [other_pid] = activated(clean_db, [simple_job(SITE)])
    assert legacy(user, live.https_url, "killJobs", ids=json.dumps([other_pid])).json() == [True]
    r = legacy(
        pilot, live.https_url, "checkJobStatus", accept_json=accept_json, ids=f"{pid},{other_pid} 987654321"
    )
    assert r.status_code == 200
    assert r.json() == {
        "StatusCode": 0,
        "data": [
            {"status": "running", "command": "NULL"},
            {"status": "cancelled", "command": "tobekilled"},
            {"status": "notfound", "command": "tobekilled"},
        ],
    }


def test_check_job_status_without_ids_is_an_error(live, pilot):
    r = legacy(pilot, live.https_url, "checkJobStatus")
    assert reply(r)["StatusCode"] in ("30", 30)


def test_get_job_concurrent_pilots_never_share_a_job(live, clean_db):
    ids = activated(clean_db, [simple_job(SITE) for _ in range(6)])

    def one_pilot(_):
        with live.session(live.pki.pilot_proxy) as s:
            return get_job(s, live)

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(pool.map(one_pilot, range(12), timeout=120))
    got = [int(r["PandaID"]) for r in replies if r["StatusCode"] == "0"]
    assert sorted(got) == ids  # each job exactly once
    assert [r["StatusCode"] for r in replies].count("20") == 6


def test_update_job_holding_and_transferring_from_the_pilot(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    assert update(pilot, live, pid, "holding")["command"] == "NULL"
    row = job_row(clean_db, pid)[1]
    assert row["jobStatus"] == "holding"
    assert row["jobDispatcherErrorDiag"].startswith("set to holding by the pilot at ")
    # a late heartbeat does not bring the job back to running
    assert update(pilot, live, pid, "running")["StatusCode"] == "0"
    assert job_row(clean_db, pid)[1]["jobStatus"] == "holding"


def test_update_job_starting_after_running_keeps_running(live, clean_db, pilot):
    pid = running_job(live, clean_db, pilot)
    assert update(pilot, live, pid, "starting") == {"StatusCode": "0", "command": "NULL"}
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"
