"""/api/v1/<module>/<method> over real mTLS: the {success, message, data} envelope of every route."""

from __future__ import annotations

import datetime as dt

import pytest

from panda_server.protocol import wire
from panda_server.web import api_v1
from panda_server.web.policy import POLICY
from tests.support.jobs import simple_job
from tests.wire.helpers import (
    ANALY_SITE,
    OTHER_DN,
    TIMEOUT,
    USER_DN,
    activated,
    count_jobs,
    envelope,
    force_status,
    job_row,
    user_job,
    v1,
)

SITE = ANALY_SITE


def submit(session, live, jobs):
    out = envelope(v1(session, live.https_url, "job/submit", body={"jobs": wire.dump_job_states(jobs)}))
    assert out["success"] is True, out
    return out["data"]


def ok(r):
    out = envelope(r)
    assert out["success"] is True, out
    assert out["message"] == ""
    return out["data"]


def refused(r, status, words=""):
    out = envelope(r, status)
    assert out["success"] is False and out["data"] is None
    assert words in out["message"], out
    return out["message"]


# --- system / metaconfig --------------------------------------------------------------------


@pytest.mark.parametrize("base", ["http_url", "https_url"])
def test_is_alive(live, anonymous, base):
    assert ok(v1(anonymous, getattr(live, base), "system/is_alive", method="GET")) == "alive=yes"


def test_get_site_specs(live, anonymous):
    every = ok(v1(anonymous, live.http_url, "metaconfig/get_site_specs", method="GET"))
    assert {"CLOUDA_T1", "CLOUDB_T2_1", "ANALY_CLOUDA_T1"} <= set(every)
    analysis = ok(v1(anonymous, live.http_url, "metaconfig/get_site_specs", method="GET", type="analysis"))
    assert set(analysis) == {"ANALY_CLOUDA_T1", "ANALY_CLOUDA_T2_1", "ANALY_CLOUDB_T1"}
    assert analysis["ANALY_CLOUDA_T1"]["cloud"] == "CLOUDA"


# --- job/* ----------------------------------------------------------------------------------


def test_submit_answers_panda_id_definition_id_and_jobset(live, clean_db, user):
    jobs = [user_job(jobsetID=77), user_job()]
    data = submit(user, live, jobs)
    assert [len(d) for d in data] == [3, 3]
    (pid0, def0, extra0), (pid1, def1, extra1) = data
    assert pid1 == pid0 + 1 and def0 == def1 == 1
    assert extra0 == {"jobsetID": 77} and extra1 == {"jobsetID": None}
    row = job_row(clean_db, pid0)[1]
    assert (row["jobStatus"], row["prodUserID"], row["jobsetID"]) == ("defined", USER_DN, 77)
    assert submit(user, live, [user_job()])[0][1] == 2  # the next submission, the next definition


def test_submit_accepts_jobs_as_a_json_list(live, clean_db, user):
    states = [user_job().to_state()]
    r = user.post(f"{live.https_url}/api/v1/job/submit", json={"jobs": states}, timeout=TIMEOUT)
    [[pid, _, _]] = ok(r)
    assert job_row(clean_db, pid)[1]["jobStatus"] == "defined"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 400, "jobs is required"),
        ({"jobs": "nonsense"}, 400, "not valid JSON"),
        ({"jobs": '[["abc", []]]'}, 400, "job 0"),
        ({"jobs": wire.dump_job_states([simple_job("CLOUDA_T1", label="managed")])}, 403, "production role"),
    ],
)
def test_submit_refuses_bad_jobs_and_stores_nothing(live, clean_db, user, body, status, words):
    r = v1(user, live.https_url, "job/submit", body=body)
    refused(r, status, words)
    assert count_jobs(clean_db) == 0


def test_submit_form_body(live, clean_db, user):
    r = user.post(f"{live.https_url}/api/v1/job/submit", data={"jobs": wire.dump_job_states([user_job()])},
                  headers={"Accept": "application/json"}, timeout=TIMEOUT)  # fmt: skip
    [[pid, def_id, _]] = ok(r)
    assert def_id == 1 and job_row(clean_db, pid)[1]["prodUserID"] == USER_DN


def test_get_status(live, clean_db, user):
    [[pid, _, _], [running, _, _]] = submit(user, live, [user_job(), user_job()])
    force_status(clean_db, running, "running", commandToPilot="tobekilled")
    data = ok(v1(user, live.https_url, "job/get_status", body={"job_ids": [pid, 987654321, running]}))
    assert data == [
        {"status": "defined", "command": "NULL"},
        None,
        {"status": "running", "command": "tobekilled"},
    ]
    # GET with repeated keys, and with one key
    data = ok(v1(user, live.https_url, "job/get_status", method="GET", job_ids=[pid, running]))
    assert [d["status"] for d in data] == ["defined", "running"]
    assert ok(v1(user, live.https_url, "job/get_status", method="GET", job_ids=pid)) == [
        {"status": "defined", "command": "NULL"}
    ]


@pytest.mark.parametrize("api", ["job/get_status", "job/get_description", "job/kill", "pilot/get_job_status"])
@pytest.mark.parametrize("ids", [None, "abc", ["1", "x"], "[1,"])
def test_bad_ids_are_refused(live, user, pilot, api, ids):
    body = {} if ids is None else {"job_ids": ids}
    r = v1(pilot if api.startswith("pilot/") else user, live.https_url, api, body=body)
    out = envelope(r, r.status_code)
    assert r.status_code in (200, 400)
    assert out["success"] is False and "id" in out["message"]


def test_get_description_with_datetimes_and_files(live, clean_db, user):
    [[pid, def_id, _]] = submit(user, live, [user_job()])
    raw = ok(v1(user, live.https_url, "job/get_description", body={"job_ids": [pid, 987654321]}))
    job, missing = raw
    assert missing is None
    assert set(job["creationTime"]) == {"__datetime__"}
    created = dt.datetime.fromisoformat(job["creationTime"]["__datetime__"])
    assert abs(created - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(minutes=5)
    assert (job["PandaID"], job["jobDefinitionID"], job["jobStatus"]) == (pid, def_id, "defined")
    assert job["prodUserID"] == USER_DN
    assert sorted(f["type"] for f in job["Files"]) == ["log", "output"]
    assert all(f["lfn"].count(f"{pid:05d}") == 1 for f in job["Files"])


def test_get_description_incl_archive(live, clean_db, user):
    [[pid, _, _]] = submit(user, live, [user_job()])
    force_status(clean_db, pid, "finished")
    assert ok(v1(user, live.https_url, "job/get_description", body={"job_ids": [pid]})) == [None]
    [job] = ok(v1(user, live.https_url, "job/get_description_incl_archive", body={"job_ids": [pid]}))
    assert (job["PandaID"], job["jobStatus"]) == (pid, "finished")
    [job] = ok(v1(user, live.https_url, "job/get_description_incl_archive", method="GET", job_ids=pid))
    assert job["PandaID"] == pid


def test_kill(live, clean_db, user, other):
    ids = activated(clean_db, [user_job() for _ in range(3)])
    force_status(clean_db, ids[1], "running")
    force_status(clean_db, ids[2], "finished")
    assert ok(v1(user, live.https_url, "job/kill", body={"job_ids": ids + [987654321]})) == [
        True,
        True,
        False,
        False,
    ]
    table, row = job_row(clean_db, ids[0])
    assert (table, row["jobStatus"], row["taskBufferErrorCode"]) == ("jobsarchived4", "cancelled", 100)
    assert job_row(clean_db, ids[1])[1]["commandToPilot"] == "tobekilled"
    [theirs] = activated(clean_db, [user_job()], dn=OTHER_DN)
    assert ok(v1(user, live.https_url, "job/kill", body={"job_ids": [theirs]})) == [False]
    assert ok(v1(other, live.https_url, "job/kill", body={"job_ids": [theirs], "code": "3"})) == [True]
    assert job_row(clean_db, theirs)[1]["taskBufferErrorCode"] == 103


def test_reassign(live, clean_db, user, other):
    ids = activated(clean_db, [user_job(), user_job()])
    force_status(clean_db, ids[1], "running")
    assert ok(v1(user, live.https_url, "job/reassign", body={"job_ids": ids})) == [True, False]
    assert job_row(clean_db, ids[0])[1]["jobStatus"] == "defined"
    [theirs] = activated(clean_db, [user_job()], dn=OTHER_DN)
    assert ok(v1(user, live.https_url, "job/reassign", body={"job_ids": [theirs]})) == [False]


# --- pilot/* --------------------------------------------------------------------------------


def test_acquire_jobs_without_jobs(live, pilot):
    out = envelope(v1(pilot, live.https_url, "pilot/acquire_jobs", body={"site_name": SITE}))
    assert out["success"] is False
    assert out["message"] == "No jobs in PanDA"
    assert out["data"] == {"StatusCode": 20, "jobs": []}


def test_acquire_jobs_with_snake_case_params(live, clean_db, pilot):
    ids = activated(clean_db, [user_job(minRamCount=m) for m in (0, 1000, 8000)])
    body = {"site_name": SITE, "prod_source_label": "user", "memory": 2000, "disk_space": 5000,
            "node": "wn09", "computing_element": "ce9", "n_jobs": 5}  # fmt: skip
    data = ok(v1(pilot, live.https_url, "pilot/acquire_jobs", body=body))
    assert data["StatusCode"] == 0
    assert [int(j["PandaID"]) for j in data["jobs"]] == ids[:2]
    job = data["jobs"][0]
    assert job["logFile"] == f"log.{ids[0]:05d}.job.log.tgz" and job["prodSourceLabel"] == "user"
    row = job_row(clean_db, ids[0])[1]
    assert (row["jobStatus"], row["modificationHost"], row["computingElement"]) == ("sent", "wn09", "ce9")
    # one job by default; without a memory limit the big job fits too
    activated(clean_db, [user_job()])
    data = ok(
        v1(pilot, live.https_url, "pilot/acquire_jobs", body={"site_name": SITE, "prod_source_label": "user"})
    )
    assert [int(j["PandaID"]) for j in data["jobs"]] == [ids[2]]


def test_acquire_jobs_needs_a_site(live, pilot):
    refused(v1(pilot, live.https_url, "pilot/acquire_jobs", body={}), 400, "siteName")


def test_acquire_jobs_as_a_user_is_refused(live, clean_db, user):
    [mine] = activated(clean_db, [user_job()])
    r = v1(user, live.https_url, "pilot/acquire_jobs", body={"site_name": SITE, "prod_source_label": "user"})
    out = envelope(r, 403)
    assert out["success"] is False and "pilot or production role" in out["message"]
    assert job_row(clean_db, mine)[1]["jobStatus"] == "activated"


def test_update_job_with_snake_case_params(live, clean_db, pilot):
    [pid] = activated(clean_db, [user_job()])
    ok(v1(pilot, live.https_url, "pilot/acquire_jobs", body={"site_name": SITE, "prod_source_label": "user"}))
    body = {"job_id": pid, "job_status": "running", "node": "wn10", "core_count": 4, "attempt_nr": 1,
            "cpu_consumption_time": 33, "batch_id": "b-1", "pilot_id": "pid|x"}  # fmt: skip
    assert ok(v1(pilot, live.https_url, "pilot/update_job", body=body)) == {
        "StatusCode": 0,
        "command": "NULL",
    }
    row = job_row(clean_db, pid)[1]
    assert (row["jobStatus"], row["modificationHost"], row["actualCoreCount"]) == ("running", "wn10", 4)
    assert (row["cpuConsumptionTime"], row["batchID"], row["pilotID"]) == (33, "b-1", "pid|x")
    body = {"job_id": pid, "job_status": "failed", "pilot_error_code": -1150, "pilot_error_diag": "looping",
            "meta_data": '{"a": 1}', "job_output_report": "{}"}  # fmt: skip
    assert ok(v1(pilot, live.https_url, "pilot/update_job", body=body))["StatusCode"] == 0
    row = job_row(clean_db, pid)[1]
    assert (row["jobStatus"], row["pilotErrorCode"], row["pilotErrorDiag"]) == ("holding", 1150, "looping")


def test_update_job_tells_unknown_jobs_to_stop(live, pilot):
    body = {"job_id": 987654321, "job_status": "running"}
    assert ok(v1(pilot, live.https_url, "pilot/update_job", body=body)) == {
        "StatusCode": 0,
        "command": "tobekilled",
    }


def test_update_job_bad_state_is_refused(live, clean_db, pilot):
    [pid] = activated(clean_db, [user_job()])
    force_status(clean_db, pid, "running")
    refused(
        v1(pilot, live.https_url, "pilot/update_job", body={"job_id": pid, "job_status": "done"}),
        400,
        "state",
    )
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"


def test_update_job_needs_the_pilot_role(live, clean_db, user):
    [pid] = activated(clean_db, [user_job()])
    force_status(clean_db, pid, "running")
    refused(v1(user, live.https_url, "pilot/update_job", body={"job_id": pid, "job_status": "finished"}), 403)
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"


def test_pilot_get_job_status(live, clean_db, pilot):
    [pid] = activated(clean_db, [user_job()])
    force_status(clean_db, pid, "running", attemptNr=2)
    data = ok(v1(pilot, live.https_url, "pilot/get_job_status", method="GET", job_ids=[pid, 987654321]))
    assert data == [
        {"job_id": pid, "status": "running", "attempt_number": 2},
        {"job_id": 987654321, "status": "not found", "attempt_number": 0},
    ]


# --- failures common to every route ---------------------------------------------------------


@pytest.mark.parametrize("api", sorted(k for k in api_v1.METHODS if len(POLICY[f"/api/v1/{k}"].methods) == 1))
def test_wrong_http_method_is_405(live, pilot, api):
    wrong = "GET" if POLICY[f"/api/v1/{api}"].methods == ("POST",) else "POST"
    r = v1(pilot, live.https_url, api, method=wrong)
    refused(r, 405, "accepts")


@pytest.mark.parametrize("api", sorted(k for k in api_v1.METHODS if POLICY[f"/api/v1/{k}"].secure))
def test_no_certificate_is_403(live, clean_db, anonymous, api):
    method = POLICY[f"/api/v1/{api}"].methods[-1]
    [pid] = activated(clean_db, [user_job()])
    body = {"job_ids": [pid], "job_id": pid, "job_status": "running", "site_name": SITE, "prod_source_label": "user",
            "jobs": wire.dump_job_states([user_job()])}  # fmt: skip
    refused(v1(anonymous, live.https_url, api, method=method, body=body), 403, "HTTPS")
    table, row = job_row(clean_db, pid)
    assert (table, row["jobStatus"]) == ("jobsactive4", "activated")


@pytest.mark.parametrize("api", ["job/nothing", "pilot/getJob", "system/isAlive", "nomodule/x"])
def test_unknown_api_is_404(live, anonymous, user, api):
    refused(v1(anonymous, live.http_url, api, method="GET"), 404, "not known")
    refused(v1(user, live.https_url, api), 404, "not known")


def test_unreadable_body_is_refused(live, user):
    r = user.post(f"{live.https_url}/api/v1/job/get_status", data=b"{not json",
                  headers={"Content-Type": "application/json"}, timeout=TIMEOUT)  # fmt: skip
    refused(r, 400, "unreadable body")
    r = user.post(f"{live.https_url}/api/v1/job/get_status", json=[1, 2], timeout=TIMEOUT)
    refused(r, 400, "object")


@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH"])
def test_other_http_verbs_are_405(live, user, verb):
    r = user.request(verb, f"{live.https_url}/api/v1/job/get_status", json={"job_ids": [1]}, timeout=TIMEOUT)
    assert r.status_code == 405
    r = user.request(verb, f"{live.https_url}/server/panda/getStatus", data={"ids": "1"}, timeout=TIMEOUT)
    assert r.status_code == 405
