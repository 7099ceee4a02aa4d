"""panda-client's positional job states (MiscUtils.dump_jobs_json) through our codec.

``pandaclient_golden.json`` was produced once by the real panda-client 2.2.0
(``<pcvenv>/bin/python tests/interop/pandaclient_driver.py '{"op": "golden"}'``): the JSON string
its ``MiscUtils.dump_jobs_json`` made of two jobs, and its ``JobSpec._attributes`` and
``FileSpec._attributes``. pandaclient itself is not imported here.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from panda_server.protocol import wire
from panda_server.protocol.jobspec import (
    CLIENT_FILE_ATTRIBUTE_COUNT,
    FILE_ATTRIBUTES,
    JOB_ATTRIBUTES,
    FileSpec,
    JobSpec,
)

GOLDEN = json.loads((Path(__file__).parent / "pandaclient_golden.json").read_text())
N_JOB = 126
N_FILE = 18


def load(text: str, max_jobs: int = 10) -> list[JobSpec]:
    return wire.load_job_states(text, max_jobs=max_jobs)


def state(values: list[Any], files: list[Any] | None = None) -> str:
    return json.dumps([[*values, files or []]])


# --- (a) the golden string from panda-client ---------------------------------------------------


def test_golden_fixture_has_panda_clients_shape():
    assert GOLDEN["generated_by"].startswith("panda-client 2.2.0 ")
    states = json.loads(GOLDEN["jobs_json"])
    assert [len(s) for s in states] == [N_JOB + 1, N_JOB + 1]  # values, then the list of files
    assert [len(f) for f in states[0][-1]] == [N_FILE + 1] * 3  # values, then the owner (null)
    assert all(f[-1] is None for f in states[0][-1]) and states[1][-1] == []


def test_golden_jobs_load_with_their_values():
    job, job2 = load(GOLDEN["jobs_json"])
    # "NULL" → None
    assert job.PandaID is None and job.schedulerID is None and job.pilotID is None
    assert job.modificationTime is None and job.jediTaskID is None and job.outputFileType is None
    # ints stay ints, floats floats
    assert job.jobDefinitionID == 42 and type(job.jobDefinitionID) is int
    assert (job.assignedPriority, job.currentPriority, job.maxCpuCount, job.jobsetID, job.coreCount) == (
        1000, 1000, 86400, 7, 1)  # fmt: skip
    assert job.cpuConversion == 1.5 and type(job.cpuConversion) is float
    # {"_datetime_object": "%Y-%m-%d %H:%M:%S.%f"} → datetime, microseconds kept
    assert job.creationTime == dt.datetime(2008, 10, 1, 12, 34, 56, 789000)
    assert job.stateChangeTime == dt.datetime(2008, 10, 1, 12, 35, 0)
    # strings
    assert job.jobName == "user.jdoe.golden.1" and job.jobStatus == "defined"
    assert job.prodSourceLabel == "user" and job.computingSite == "CLOUDA_T1" and job.cloud == "CLOUDA"
    assert job.jobParameters == '-j "" --sourceURL https://cache.example:25443 -p "echo%20hello"'
    assert job.creationHost == "lxplus001.cern.ch" and job.specialHandling == "ddm:rucio"
    assert job.AtlasRelease == "Atlas-14.2.20" and job.homepackage == "AnalysisTransforms"
    # files, in order
    assert [(f.lfn, f.type, f.scope) for f in job.Files] == [
        ("EVNT.012345._00001.pool.root.1", "input", "mc08"),
        ("user.jdoe.golden.$PANDAID.out.root", "output", "user.jdoe"),
        ("user.jdoe.golden.$PANDAID.log.tgz", "log", "user.jdoe"),
    ]
    fin, fout, flog = job.Files
    assert fin.fsize == 1234567 and type(fin.fsize) is int
    assert fin.GUID == "6f1c5a3e-8f3a-4f5b-9d2c-1a2b3c4d5e6f" and fin.checksum == "ad:0a1b2c3d"
    assert (
        fin.status == "ready"
        and fin.dataset == fin.prodDBlock == "mc08.105001.pythia_minbias.evgen.EVNT.e349"
    )
    assert fin.PandaID is None and fin.rowID is None and fin.md5sum is None
    assert fout.status is None and fout.fsize is None and fout.destinationSE == "CLOUDA_T1"
    assert flog.destinationDBlock == "user.jdoe.golden.log"
    # the owner slot (trailing null) does not leak into server-only file attributes
    assert (fin.jediTaskID, fin.datasetID, fin.fileID, fin.attemptNr) == (None, None, None, None)
    # the nearly empty job: 0 is not "NULL"
    assert job2.PandaID == 4242 and job2.maxCpuCount == 0 and job2.jobName == "user.jdoe.golden.2"
    assert job2.Files == [] and job2.jobStatus is None and job2.creationTime is None


def test_our_dump_of_the_golden_jobs_is_position_for_position_the_clients():
    """Our states differ from panda-client's only in spelling unset values null instead of "NULL"."""

    def norm(value: Any) -> Any:
        if value == "NULL":
            return None
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    ours = json.loads(wire.dump_job_states(load(GOLDEN["jobs_json"])))
    assert ours == norm(json.loads(GOLDEN["jobs_json"]))


# --- (b) our dump → our load is the identity -------------------------------------------------


def sample_jobs() -> list[JobSpec]:
    job = JobSpec(jobDefinitionID=7, jobName="user.x.1", prodSourceLabel="user", computingSite="CLOUDA_T1",
                  creationTime=dt.datetime(2009, 2, 3, 4, 5, 6, 7), endTime=dt.datetime(2009, 2, 3, 5, 0),
                  cpuConversion=0.25, jobParameters="a \"quoted\" 'arg' ünïcode", currentPriority=-5,
                  maxCpuCount=0, prodDBlock=None, outputFileType="log")  # fmt: skip
    job.add_file(FileSpec(lfn="in.root", type="input", fsize=10, scope="mc", GUID="g-1", status="ready"))
    job.add_file(FileSpec(lfn="log.$PANDAID.tgz", type="log", dataset="d.log", destinationDBlock="d.log"))
    return [job, JobSpec(), JobSpec(PandaID=1, jobStatus="activated")]


def test_dump_then_load_is_the_identity():
    jobs = sample_jobs()
    text = wire.dump_job_states(jobs)
    again = load(text)
    assert [j.to_dict() for j in again] == [j.to_dict() for j in jobs]
    assert again[0].creationTime == dt.datetime(2009, 2, 3, 4, 5, 6, 7)
    assert wire.dump_job_states(again) == text
    # the client's layout: 126 values + files; 18 file values + the owner
    states = json.loads(text)
    assert len(states[0]) == N_JOB + 1 and [len(f) for f in states[0][-1]] == [N_FILE + 1] * 2
    assert states[0][JOB_ATTRIBUTES.index("creationTime")] == {
        "_datetime_object": "2009-02-03 04:05:06.000007"
    }


def test_server_only_file_attributes_do_not_travel():
    job = JobSpec(jobName="x")
    job.add_file(FileSpec(lfn="a", type="input", jediTaskID=1, datasetID=2, fileID=3, attemptNr=4))
    (f,) = load(wire.dump_job_states([job]))[0].Files
    assert f.lfn == "a" and (f.jediTaskID, f.datasetID, f.fileID, f.attemptNr) == (None, None, None, None)


# --- (c) attribute names are panda-client's ------------------------------------------------


def test_job_attributes_are_panda_clients():
    assert len(GOLDEN["job_attributes"]) == N_JOB
    assert JOB_ATTRIBUTES == tuple(GOLDEN["job_attributes"])


def test_file_attributes_are_panda_clients():
    assert len(GOLDEN["file_attributes"]) == N_FILE == CLIENT_FILE_ATTRIBUTE_COUNT
    assert FILE_ATTRIBUTES[:CLIENT_FILE_ATTRIBUTE_COUNT] == tuple(GOLDEN["file_attributes"])
    # what we keep beyond the client's 18 is server-side only
    assert FILE_ATTRIBUTES[CLIENT_FILE_ATTRIBUTE_COUNT:] == ("jediTaskID", "datasetID", "fileID", "attemptNr")


# --- (d) shorter, longer and malformed states ----------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 73, 125])
def test_shorter_state_is_padded_with_none(n):
    values = [None] * n
    if n:
        values[0] = 99  # PandaID
    if n > 19:
        values[19] = "older.client.job"  # jobName
    (job,) = load(state(values, [["NULL", "NULL", "g", "f.root", "input", None]]))  # 5 values + owner
    assert job.PandaID == (99 if n else None)
    assert all(getattr(job, name) is None for name in JOB_ATTRIBUTES[max(n, 20) :])
    assert len(job.to_state()) == N_JOB + 1
    (f,) = job.Files  # a short file state is padded too
    assert (f.GUID, f.lfn, f.type, f.scope, f.fsize) == ("g", "f.root", "input", None, None)


def test_the_last_item_of_a_file_state_is_the_owner_and_ignored():
    """pandaclient's FileSpec.__setstate__: values, then the owner, whatever the length."""
    full = ["NULL"] * N_FILE
    full[FILE_ATTRIBUTES.index("lfn")] = "a.root"
    (job,) = load(state([None], [[*full, "an owner"], ["NULL", "NULL", "NULL", "b.root", 123]]))
    a, b = job.Files
    assert a.lfn == "a.root" and a.jediTaskID is None
    assert b.lfn == "b.root" and b.type is None  # 123 was b's owner, not its type


def test_73_attribute_state_of_the_2008_client():
    values: list[Any] = ["NULL"] * 73
    values[JOB_ATTRIBUTES.index("jobName")] = "pathena.2008"
    values[JOB_ATTRIBUTES.index("processingType")] = "pathena"  # the 73rd, last S08 attribute
    (job,) = load(state(values))
    assert (job.jobName, job.processingType, job.prodUserName, job.outputFileType) == (
        "pathena.2008", "pathena", None, None)  # fmt: skip


def test_longer_state_is_refused_clearly():
    with pytest.raises(wire.BodyError, match=r"job 0: a job state has 127 attributes, at most 126 are known"):
        load(state([None] * (N_JOB + 1)))
    good = [None] * N_JOB
    with pytest.raises(wire.BodyError, match=r"^job 1: .*127 attributes"):
        load(json.dumps([[*good, []], [*good, None, []]]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"PandaID": 1}', "jobs must be a JSON list of job states"),
        ('"[]"', "jobs must be a JSON list of job states"),
        ("5", "jobs must be a JSON list of job states"),
        ("[5]", "job 0: a job state must be a non-empty list"),
        ('[{"PandaID": 1}]', "job 0: a job state must be a non-empty list"),
        ("[[]]", "job 0: a job state must be a non-empty list"),
        ('[[1, 2, "not files"]]', "job 0: the last item of a job state must be its list of files"),
        ('[[1, 2, [{"lfn": "a"}]]]', "job 0: a file state must be a non-empty list"),
        ('[[1, 2, ["a"]]]', "job 0: a file state must be a non-empty list"),
        ("[[1, 2, [[]]]]", "job 0: a file state must be a non-empty list"),
        ("[[1, 2, []", "jobs is not valid JSON"),
    ],
)
def test_malformed_states_are_refused(text, message):
    with pytest.raises(wire.BodyError) as info:
        load(text)
    assert str(info.value).startswith(message)


def test_bad_values_name_the_job_and_attribute():
    values: list[Any] = [None] * N_JOB
    values[JOB_ATTRIBUTES.index("jobDefinitionID")] = "forty-two"
    with pytest.raises(wire.BodyError, match=r"^job 0: jobDefinitionID: cannot use 'forty-two'"):
        load(state(values))
    values[JOB_ATTRIBUTES.index("jobDefinitionID")] = None
    values[JOB_ATTRIBUTES.index("creationTime")] = {"_datetime_object": "yesterday"}
    with pytest.raises(wire.BodyError, match=r"time data 'yesterday' does not match"):
        load(state(values))
    values[JOB_ATTRIBUTES.index("creationTime")] = "2008-10-01 12:00:00"  # a plain string is read too
    assert load(state(values))[0].creationTime == dt.datetime(2008, 10, 1, 12)


def test_too_many_jobs_are_refused():
    with pytest.raises(wire.BodyError, match="too many jobs in one submission: 3 > 2"):
        load(json.dumps([[[]]] * 3), max_jobs=2)
