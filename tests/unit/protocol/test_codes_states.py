"""Numbers with a wire meaning are frozen: pilots, monitors and Bamboo key on them."""

from __future__ import annotations

from panda_server.protocol.codes import KILL_CODES, JobDispatcherError, StatusCode, TaskBufferError
from panda_server.protocol.states import JOB_TABLES, TABLE_OF, JobStatus, sources_of


def test_status_codes_frozen():
    assert {c.name: c.value for c in StatusCode} == {
        "SUCCESS": 0, "TIMEOUT": 10, "NO_JOBS": 20, "FAILED": 30, "NON_SECURE": 40, "INVALID": 50,
        "ROLE": 60, "PERMISSION": 70, "MISSING_KEY": 80, "PROXY_ERROR": 90,
    }  # fmt: skip


def test_error_families_frozen():
    assert [c.value for c in JobDispatcherError] == [100, 101, 102, 103, 104, 105]
    assert TaskBufferError.KILLED == 100 and TaskBufferError.EXPIRED == 102 and TaskBufferError.ABORTED == 103
    assert KILL_CODES["3"][0] == 103 and KILL_CODES["2"][0] == 102


def test_every_state_lives_in_one_of_the_four_tables():
    assert set(TABLE_OF) == set(JobStatus)
    assert set(TABLE_OF.values()) == set(JOB_TABLES)
    assert TABLE_OF[JobStatus.holding] == "jobsactive4"
    assert TABLE_OF[JobStatus.cancelled] == "jobsarchived4"


def test_sources_of_sent_is_only_activated():
    assert sources_of(JobStatus.sent) == {JobStatus.activated}
