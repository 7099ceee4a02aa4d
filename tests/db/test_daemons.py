"""setupper and adder cycles against real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from panda_server.dataservice import adder, setupper
from panda_server.db import tables as t
from panda_server.protocol.jobspec import FileSpec
from panda_server.protocol.states import JobStatus
from panda_server.settings import Settings
from panda_server.taskbuffer import reports, rows
from tests.support.dbjobs import insert_job
from tests.support.jobs import simple_job

NOW = dt.datetime(2026, 11, 24, 12, 0, 0)
S = Settings()


def _job(conn, panda_id):
    return rows.peek_jobs(conn, [panda_id])[0]


def test_setupper_activates_jobs_with_a_site_and_no_inputs(clean_db):
    with clean_db.begin() as conn:
        ready = insert_job(conn, JobStatus.defined, site="CLOUDA_T1")
        no_site = insert_job(conn, JobStatus.defined, site=None)
        unknown = insert_job(conn, JobStatus.defined, site="NO_SUCH_SITE")
        job = simple_job()
        job.add_file(FileSpec(lfn="in.root", type="input", dataset="no.such.dataset.d", scope="s"))
        with_input = insert_job(conn, JobStatus.defined, job=job)
    summary = setupper.run_once(clean_db, S, NOW)
    assert (summary.activated, summary.failed, summary.waiting) == (2, 1, 1)
    with clean_db.connect() as conn:
        assert _job(conn, ready).jobStatus == "activated"
        assert _job(conn, ready).cloud == "CLOUDA"
        brokered = _job(conn, no_site)  # brokered within its cloud (tests/dataservice has the details)
        assert brokered.jobStatus == "activated" and brokered.computingSite.startswith("CLOUDA_")
        assert _job(conn, with_input).jobStatus == "waiting"  # its input dataset is unknown to DDM
        failed = _job(conn, unknown)
        assert (failed.jobStatus, failed.ddmErrorCode) == ("failed", 100)
        assert "unknown computingSite NO_SUCH_SITE" in failed.ddmErrorDiag
    assert setupper.run_once(clean_db, S, NOW).activated == 0  # idempotent


def _holding_job_with_report(engine, report, pilot_status="finished", outputs=1):
    with engine.begin() as conn:
        panda_id = insert_job(conn, JobStatus.holding, job=simple_job(outputs=outputs))
        job = _job(conn, panda_id)
        data = report(job) if callable(report) else report
        reports.save(
            conn, panda_id, pilot_status=pilot_status, data=data, attempt_nr=1, label="managed", now=NOW
        )
    return panda_id


def _full_report(job):
    return json.dumps({f.lfn: {"guid": f.GUID, "fsize": 1000 + i, "adler32": f"0000abc{i}", "surl": "file:///x"}
                       for i, f in enumerate(job.Files)})  # fmt: skip


def test_adder_finishes_a_job_with_a_complete_report(clean_db):
    panda_id = _holding_job_with_report(clean_db, _full_report)
    assert adder.run_once(clean_db, S, NOW).finished == 1
    with clean_db.connect() as conn:
        job = _job(conn, panda_id)
        assert job.jobStatus == "finished"
        assert {f.status for f in job.Files} == {"ready"}
        assert sorted(f.checksum for f in job.Files) == ["ad:0000abc0", "ad:0000abc1"]
        assert all(f.fsize >= 1000 for f in job.Files)
        assert conn.execute(sa.select(sa.func.count()).select_from(t.job_output_report)).scalar_one() == 0
    assert adder.run_once(clean_db, S, NOW).finished == 0  # the report is consumed


def test_adder_fails_a_job_whose_report_lacks_an_output(clean_db):
    def partial(job):
        log = job.files_of_type("log")[0]
        return json.dumps({log.lfn: {"guid": log.GUID, "fsize": 5, "adler32": "01"}})

    panda_id = _holding_job_with_report(clean_db, partial)
    assert adder.run_once(clean_db, S, NOW).failed == 1
    with clean_db.connect() as conn:
        job = _job(conn, panda_id)
        assert (job.jobStatus, job.ddmErrorCode) == ("failed", 200)
        assert "missing from the pilot's output report" in job.ddmErrorDiag
        by_type = {f.type: f.status for f in job.Files}
        assert by_type == {"output": "failed", "log": "ready"}  # the log was saved: keep it


def test_adder_fails_on_unparsable_or_wrong_guid_reports(clean_db):
    garbage = _holding_job_with_report(clean_db, "{not json")
    wrong_guid = _holding_job_with_report(
        clean_db,
        lambda job: json.dumps({f.lfn: {"guid": "deadbeef", "fsize": 1, "adler32": "1"} for f in job.Files}),
    )
    adder.run_once(clean_db, S, NOW)
    with clean_db.connect() as conn:
        assert "unusable output report" in _job(conn, garbage).ddmErrorDiag
        assert "GUID deadbeef differs" in _job(conn, wrong_guid).ddmErrorDiag


def test_adder_archives_a_pilot_failure_as_failed_and_keeps_pilot_codes(clean_db):
    panda_id = _holding_job_with_report(clean_db, _full_report, pilot_status="failed")
    with clean_db.begin() as conn:
        conn.execute(sa.update(t.jobsactive4).where(t.jobsactive4.c.PandaID == panda_id)
                     .values(pilotErrorCode=1099, pilotErrorDiag="stage-in failed"))  # fmt: skip
    assert adder.run_once(clean_db, S, NOW).failed == 1
    with clean_db.connect() as conn:
        job = _job(conn, panda_id)
        assert (job.jobStatus, job.pilotErrorCode, job.ddmErrorCode) == ("failed", 1099, None)
        assert {f.type: f.status for f in job.Files} == {"output": "failed", "log": "ready"}


def test_adder_reads_2008_pool_xml_reports(clean_db):
    def pool(job):
        files = "".join(
            f'<File ID="{f.GUID}"><logical><lfn name="{f.lfn}"/></logical>'
            f'<metadata att_name="fsize" att_value="42"/><metadata att_name="md5sum" att_value="abcd"/></File>'
            for f in job.Files
        )
        return f'<?xml version="1.0"?><POOLFILECATALOG>{files}</POOLFILECATALOG>'

    panda_id = _holding_job_with_report(clean_db, pool)
    assert adder.run_once(clean_db, S, NOW).finished == 1
    with clean_db.connect() as conn:
        assert {(f.fsize, f.checksum, f.md5sum) for f in _job(conn, panda_id).Files} == {
            (42, "md5:abcd", "abcd")
        }


def test_adder_drops_reports_of_jobs_no_longer_holding(clean_db):
    with clean_db.begin() as conn:
        panda_id = insert_job(conn, JobStatus.cancelled)
        reports.save(conn, panda_id, pilot_status="finished", data="{}", attempt_nr=1, label="user", now=NOW)
    assert adder.run_once(clean_db, S, NOW).skipped == 1
    with clean_db.connect() as conn:
        assert _job(conn, panda_id).jobStatus == "cancelled"
        assert not reports.exists(conn, panda_id)
