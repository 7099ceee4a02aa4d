"""The client's legacy surface over real mTLS: submit, look up, kill, reassign, site/cloud info.

Replies that were pickles in 2008 are JSON text here (we never unpickle).
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.protocol import wire
from tests.support.jobs import simple_job
from tests.wire.helpers import (
    ANALY_SITE,
    OTHER_DN,
    TIMEOUT,
    USER_DN,
    activated,
    count_jobs,
    force_status,
    job_row,
    json_text,
    legacy,
    reply,
    scalar,
    states_to_jobs,
    store_jobs,
    submit,
    urlencoded,
    user_job,
)

SITE = ANALY_SITE


def job_states(session, live, ids, method="getJobStatus"):
    return states_to_jobs(json_text(legacy(session, live.https_url, method, ids=json.dumps(ids))))


def kill(session, live, ids, **params):
    return json_text(legacy(session, live.https_url, "killJobs", ids=json.dumps(ids), **params))


# --- submitJobs -----------------------------------------------------------------------------


def test_submit_jobs_stores_defined_jobs_and_answers_ids(live, clean_db, user):
    jobs = [user_job(), user_job()]
    out = submit(user, live.https_url, jobs)
    assert [len(entry) for entry in out] == [3, 3]
    ids = [entry[0] for entry in out]
    assert ids[1] == ids[0] + 1
    assert [entry[2] for entry in out] == [j.jobName for j in jobs]
    assert out[0][1] == out[1][1] == 1  # one jobDefinitionID per submission
    for pid in ids:
        table, row = job_row(clean_db, pid)
        assert (table, row["jobStatus"], row["prodSourceLabel"]) == ("jobsdefined4", "defined", "user")
        assert row["computingSite"] == SITE and row["relocationFlag"] == 1


def test_submit_jobs_substitutes_panda_id_in_lfns(live, clean_db, user):
    job = user_job(params="--out out0.$PANDAID.root")
    [[pid, _, _]] = submit(user, live.https_url, [job])
    [got] = job_states(user, live, [pid], "getFullJobStatus")
    stamp = f"{pid:05d}"
    assert sorted(f.lfn for f in got.Files) == sorted([f"out0.{stamp}.root", f"log.{stamp}.job.log.tgz"])
    assert got.jobParameters == f"--out out0.{stamp}.root"
    assert all(f.PandaID == pid for f in got.Files)


def test_submit_jobs_prod_user_id_is_the_callers_dn(live, clean_db, user):
    [[pid, _, _]] = submit(user, live.https_url, [user_job(prodUserID="/DC=org/CN=Somebody Else")])
    assert job_row(clean_db, pid)[1]["prodUserID"] == USER_DN


def test_submit_jobs_job_definition_id_increments_per_user_submission(live, clean_db, user, other):
    first = submit(user, live.https_url, [user_job(), user_job()])
    second = submit(user, live.https_url, [user_job()])
    theirs = submit(other, live.https_url, [user_job()])
    assert [e[1] for e in first] == [1, 1]
    assert [e[1] for e in second] == [2]
    assert [e[1] for e in theirs] == [1]
    u = t.users
    assert scalar(clean_db, sa.select(u.c.jobid).where(u.c.dn == USER_DN)) == 2
    assert job_row(clean_db, theirs[0][0])[1]["prodUserID"] == OTHER_DN


def test_submit_jobs_managed_label_needs_production_role(live, clean_db, user, pilot):
    for session in (user, pilot):
        r = legacy(session, live.https_url, "submitJobs",
                   jobs=wire.dump_job_states([simple_job("CLOUDA_T1", label="managed")]))  # fmt: skip
        out = reply(r)
        assert out["StatusCode"] == "60"  # StatusCode ROLE
        assert "production" in out["errorDialog"]
    assert count_jobs(clean_db) == 0


@pytest.mark.parametrize(
    ("jobs", "words"),
    [
        ("this is not json", "not valid JSON"),
        ('{"a": 1}', "list"),
        ("[[]", "not valid JSON"),
        ("[42]", "job 0"),
        ('[["abc", []]]', "job 0: PandaID"),
        ("[[1, [5]]]", "job 0: a file state"),
        ('[[1, 2, "s", "p", {"x": 1}, []]]', "job 0: creationTime"),
        (json.dumps([[None] * 200 + [[]]]), "attributes"),
    ],
)
def test_submit_jobs_malformed_is_a_clear_error_and_stores_nothing(live, clean_db, user, jobs, words):
    r = legacy(user, live.https_url, "submitJobs", jobs=jobs)
    assert r.status_code == 200, r.text
    out = reply(r)
    assert out["StatusCode"] == "30"
    assert words in out["errorDialog"], out
    assert count_jobs(clean_db) == 0


def test_submit_jobs_a_bad_job_among_good_ones_stores_nothing(live, clean_db, user):
    good, bad = user_job(), user_job()
    bad.Files[0].type = "pseudo"
    out = reply(legacy(user, live.https_url, "submitJobs", jobs=wire.dump_job_states([good, bad])))
    assert out["StatusCode"] == "30" and "job 1" in out["errorDialog"]
    assert count_jobs(clean_db) == 0
    assert scalar(clean_db, sa.select(sa.func.count()).select_from(t.filestable4)) == 0


def test_submit_jobs_without_jobs_is_an_error(live, clean_db, user):
    out = reply(legacy(user, live.https_url, "submitJobs"))
    assert out["StatusCode"] == "30" and "jobs" in out["errorDialog"]
    out = reply(legacy(user, live.https_url, "submitJobs", jobs="[]"))
    assert out["StatusCode"] == "30"
    assert count_jobs(clean_db) == 0


def test_submit_jobs_more_than_the_limit_is_refused(live, clean_db, user):
    jobs = "[" + ",".join(["[[]]"] * 2001) + "]"
    out = reply(legacy(user, live.https_url, "submitJobs", jobs=jobs))
    assert out["StatusCode"] == "30"
    assert "too many jobs" in out["errorDialog"] and "2000" in out["errorDialog"]
    assert count_jobs(clean_db) == 0


def test_submit_jobs_by_a_disabled_user_is_refused(live, clean_db, user):
    submit(user, live.https_url, [user_job()])
    with clean_db.begin() as conn:
        conn.execute(sa.update(t.users).where(t.users.c.dn == USER_DN).values(status="disabled"))
    out = reply(legacy(user, live.https_url, "submitJobs", jobs=wire.dump_job_states([user_job()])))
    assert out["StatusCode"] != "0" and "disabled" in out["errorDialog"]
    assert count_jobs(clean_db) == 1


# --- getJobStatus / getFullJobStatus -------------------------------------------------------


@pytest.mark.parametrize("method", ["getJobStatus", "getFullJobStatus"])
def test_job_status_returns_job_states_with_files_and_none_for_unknown(live, clean_db, user, method):
    [[pid, def_id, name]] = submit(user, live.https_url, [user_job()])
    [[done, _, _]] = submit(user, live.https_url, [user_job()])
    force_status(clean_db, done, "finished")
    found = job_states(user, live, [pid, 987654321, done], method)
    assert found[1] is None
    job, archived = found[0], found[2]
    assert (job.PandaID, job.jobDefinitionID, job.jobName, job.jobStatus) == (pid, def_id, name, "defined")
    assert job.prodUserID == USER_DN and job.computingSite == SITE
    assert job.creationTime is not None and job.creationTime.year >= 2025
    assert sorted(f.type for f in job.Files) == ["log", "output"]
    assert (archived.PandaID, archived.jobStatus) == (done, "finished")


def test_job_status_accepts_comma_separated_ids_and_get(live, clean_db, user):
    [[pid, _, _]] = submit(user, live.https_url, [user_job()])
    r = legacy(user, live.https_url, "getJobStatus", how="get", ids=f"{pid},987654321")
    assert [j and j.PandaID for j in states_to_jobs(json_text(r))] == [pid, None]


@pytest.mark.parametrize("ids", ["", "[1, 'x']", "abc", "[1,"])
def test_job_status_bad_ids_is_an_error(live, user, ids):
    out = reply(legacy(user, live.https_url, "getJobStatus", ids=ids))
    assert out["StatusCode"] == "30" and "id" in out["errorDialog"]


# --- killJobs -------------------------------------------------------------------------------


def test_kill_jobs_activated_job_is_cancelled(live, clean_db, user):
    [pid] = activated(clean_db, [user_job()])
    assert kill(user, live, [pid]) == [True]
    table, row = job_row(clean_db, pid)
    assert (table, row["jobStatus"], row["taskBufferErrorCode"]) == ("jobsarchived4", "cancelled", 100)
    assert "Jane Doe" in row["taskBufferErrorDiag"]
    f = t.filestable4
    statuses = set(scalar_list(clean_db, sa.select(f.c.status).where(f.c.PandaID == pid)))
    assert statuses == {"cancelled"}
    assert kill(user, live, [pid]) == [False]  # already over


def scalar_list(engine, query):
    with engine.connect() as conn:
        return conn.execute(query).scalars().all()


@pytest.mark.parametrize("status", ["sent", "starting", "running"])
def test_kill_jobs_with_a_pilot_sets_tobekilled(live, clean_db, user, status):
    [pid] = activated(clean_db, [user_job()])
    force_status(clean_db, pid, status)
    assert kill(user, live, [pid]) == [True]
    table, row = job_row(clean_db, pid)
    assert (table, row["jobStatus"], row["commandToPilot"]) == ("jobsactive4", status, "tobekilled")
    assert row["taskBufferErrorCode"] == 100


def test_kill_jobs_of_another_user_is_false(live, clean_db, user, other):
    [pid] = activated(clean_db, [user_job()], dn=OTHER_DN)
    assert kill(user, live, [pid, 987654321]) == [False, False]
    assert job_row(clean_db, pid)[1]["jobStatus"] == "activated"
    assert kill(other, live, [pid]) == [True]


@pytest.mark.parametrize(("code", "error"), [("2", 102), ("3", 103), ("9", 100)])
def test_kill_jobs_codes(live, clean_db, user, code, error):
    [pid] = activated(clean_db, [user_job()])
    assert kill(user, live, [pid], code=code) == [True]
    assert job_row(clean_db, pid)[1]["taskBufferErrorCode"] == error


def test_kill_jobs_defined_and_waiting_jobs(live, clean_db, user):
    [[defined, _, _], [waiting, _, _]] = submit(user, live.https_url, [user_job(), user_job()])
    force_status(clean_db, waiting, "waiting")
    assert kill(user, live, [defined, waiting]) == [True, True]
    assert [job_row(clean_db, p)[1]["jobStatus"] for p in (defined, waiting)] == ["cancelled"] * 2


# --- reassignJobs ---------------------------------------------------------------------------


def test_reassign_jobs(live, clean_db, user, other):
    ids = activated(clean_db, [user_job() for _ in range(3)])
    force_status(clean_db, ids[1], "running")
    r = legacy(user, live.https_url, "reassignJobs", ids=json.dumps(ids + [987654321]))
    assert json_text(r) == [True, False, True, False]
    table, row = job_row(clean_db, ids[0])
    assert (table, row["jobStatus"]) == ("jobsdefined4", "defined")
    assert row["computingSite"] == SITE  # relocationFlag=1: the submitter's site is kept
    assert job_row(clean_db, ids[1])[1]["jobStatus"] == "running"
    # another user may not reassign Jane's jobs
    [mine] = activated(clean_db, [user_job()])
    assert json_text(legacy(other, live.https_url, "reassignJobs", ids=json.dumps([mine]))) == [False]
    assert job_row(clean_db, mine)[1]["jobStatus"] == "activated"


# --- queryPandaIDs --------------------------------------------------------------------------


def test_query_panda_ids_newest_managed_job_per_job_definition(live, clean_db, user):
    a = store_jobs(clean_db, [simple_job("CLOUDA_T1", jobDefinitionID=7001)])
    b = store_jobs(clean_db, [simple_job("CLOUDA_T1", jobDefinitionID=7002)])
    b2 = store_jobs(clean_db, [simple_job("CLOUDA_T1", jobDefinitionID=7002)])
    force_status(clean_db, b[0], "failed")
    store_jobs(clean_db, [simple_job("CLOUDA_T1", label="user", jobDefinitionID=7003)])
    r = legacy(user, live.http_url, "queryPandaIDs", ids=json.dumps([7001, 7002, 7003, 9999]))
    assert json_text(r) == [a[0], b2[0], None, None]


# --- site and cloud information ---------------------------------------------------------------


def test_get_job_statistics_per_site(live, clean_db, user):
    ids = activated(clean_db, [user_job() for _ in range(3)])
    force_status(clean_db, ids[2], "running")
    submit(user, live.https_url, [simple_job("ANALY_CLOUDB_T1", label="user")])
    force_status(clean_db, ids[0], "finished")  # archived jobs are not counted
    out = json_text(legacy(user, live.http_url, "getJobStatisticsPerSite"))
    assert out == {SITE: {"activated": 1, "running": 1}, "ANALY_CLOUDB_T1": {"defined": 1}}


def test_get_site_specs(live, user):
    analysis = json_text(legacy(user, live.http_url, "getSiteSpecs"))
    assert set(analysis) == {"ANALY_CLOUDA_T1", "ANALY_CLOUDA_T2_1", "ANALY_CLOUDB_T1"}
    spec = analysis["ANALY_CLOUDA_T1"]
    assert (spec["cloud"], spec["type"], spec["status"], spec["ddm"]) == ("CLOUDA", "analysis", "online",
                                                                          "CLOUDA_T1_DATADISK")  # fmt: skip
    assert spec["memory"] == 2000
    every = json_text(legacy(user, live.http_url, "getSiteSpecs", siteType="all"))
    assert {"CLOUDA_T1", "CLOUDB_T2_1", "ANALY_CLOUDB_T1"} <= set(every)
    production = json_text(legacy(user, live.http_url, "getSiteSpecs", siteType="production"))
    assert "CLOUDA_T1" in production and not any(s.startswith("ANALY_") for s in production)


def test_get_cloud_specs(live, user):
    clouds = json_text(legacy(user, live.http_url, "getCloudSpecs"))
    assert {"CLOUDA", "CLOUDB"} <= set(clouds)
    assert clouds["CLOUDA"]["tier1"] == "CLOUDA_T1"
    assert clouds["CLOUDA"]["name"] == "CLOUDA"


@pytest.mark.parametrize("base", ["http_url", "https_url"])
def test_is_alive_and_get_server(live, user, base):
    url = getattr(live, base)
    r = legacy(user, url, "isAlive", how="get")
    assert (r.status_code, r.text) == (200, "alive=yes")
    r = legacy(user, url, "getServer")
    assert (r.status_code, r.text) == (200, f"127.0.0.1:{live.https_port}")


@pytest.mark.parametrize("method", ["noSuchMethod", "getJobs", "submitjobs", "__init__", "_db"])
def test_unknown_method_is_forbidden(live, user, method):
    for how in ("get", "form"):
        r = legacy(user, live.https_url, method, how=how)
        assert r.status_code == 403
        assert r.text == f"ERROR : method {method} is forbidden"
    r = user.get(f"{live.http_url}/server/panda/{method}", timeout=TIMEOUT)
    assert r.status_code == 403


def test_legacy_replies_urlencoded_errors_on_http(live, user):
    out = urlencoded(legacy(user, live.http_url, "killJobs", ids="[1]"))
    assert out["StatusCode"] == "40"


def test_job_status_more_ids_than_the_limit_is_refused(live, user):
    out = reply(legacy(user, live.https_url, "getJobStatus", ids=json.dumps(list(range(1, 5502)))))
    assert out["StatusCode"] == "30" and "5500" in out["errorDialog"]
