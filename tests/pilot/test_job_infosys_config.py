"""The pilot's pure parts: the getJob dict, queue data look-ups, options, update fields."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pilot import config, infosys, job
from pilot.errors import ERRORS, PilotFailure, exit_code
from pilot.wrapper.transfers import replace_lfns

JOB = {
    "StatusCode": "0", "PandaID": "1002", "attemptNr": "2", "prodSourceLabel": "managed",
    "transformation": "/bin/bash", "jobPars": "-c 'cat in1 in2'", "taskID": "7", "jobsetID": "NULL",
    "inFiles": "in1,in2", "GUID": "g1,g2", "fsize": "24,NULL", "checksum": "ad:0a0b0c0d,md5:abc",
    "scopeIn": "s1,s2", "realDatasetsIn": "ds.in,ds.in", "ddmEndPointIn": "SE_A,NULL",
    "outFiles": "out1,log.tgz", "realDatasets": "ds.out,ds.log", "ddmEndPointOut": "SE_A,SE_A",
    "scopeOut": "s.out", "scopeLog": "s.log", "logFile": "log.tgz", "logGUID": "LOG-GUID",
    "maxCpuCount": "0", "minRamCount": "2000", "maxWalltime": "NULL", "coreCount": "NULL", "transferType": "NULL",
}  # fmt: skip


def test_job_lists_are_aligned_by_position():
    j = job.parse(JOB)
    assert (j.PandaID, j.attemptNr, j.minRamCount, j.maxWalltime, j.coreCount) == (1002, 2, 2000, 0, 1)
    assert [(f.lfn, f.guid, f.fsize, f.checksum, f.scope, f.ddmendpoint) for f in j.inputs] == [
        ("in1", "g1", 24, "ad:0a0b0c0d", "s1", "SE_A"), ("in2", "g2", None, "md5:abc", "s2", "")]  # fmt: skip
    out, log = j.outputs
    assert (out.lfn, out.scope, out.dataset, out.is_log) == ("out1", "s.out", "ds.out", False)
    assert (log.lfn, log.scope, log.guid, log.is_log) == ("log.tgz", "s.log", "LOG-GUID", True)
    assert out.guid and out.guid == out.guid.upper()  # the pilot makes output GUIDs (pilot3)


def test_job_without_panda_id_or_with_garbage_numbers_is_refused():
    with pytest.raises(PilotFailure) as exc:
        job.parse({"StatusCode": "0"})
    assert exc.value.code == 1302
    with pytest.raises(PilotFailure) as exc:
        job.parse({**JOB, "maxCpuCount": "lots"})
    assert exc.value.code == 1117 and "maxCpuCount" in exc.value.diag


@pytest.mark.parametrize(("field", "value", "code"), [
    ("inFiles", "../../etc/passwd,in2", 1371), ("outFiles", "out1,/tmp/x", 1371), ("outFiles", ".hidden,log.tgz", 1371),
    ("inFiles", "a" * 256 + ",in2", 1190),
])  # fmt: skip
def test_file_names_that_would_leave_the_job_dir_are_refused(field, value, code):
    with pytest.raises(PilotFailure) as exc:
        job.parse({**JOB, field: value})
    assert exc.value.code == code


@pytest.mark.parametrize(("transfer_type", "pars", "mode"), [
    ("NULL", "x", "copy"), ("direct", "x", "direct"), ("NULL", "a --accessmode=direct", "direct"),
    ("direct", "--accessmode=copy", "copy"), ("direct", "--useLocalIO", "copy"),
])  # fmt: skip
def test_access_mode(transfer_type, pars, mode):
    assert job.parse({**JOB, "transferType": transfer_type, "jobPars": pars}).access_mode == mode


def test_rucio_path_is_the_deterministic_one():
    digest = hashlib.md5(b"user.jane:f.root").hexdigest()
    assert infosys.rucio_path("user.jane", "f.root") == f"user/jane/{digest[:2]}/{digest[2:4]}/f.root"


ENDPOINTS = {
    "ROOT_SE": {"arprotocols": {"read_lan": [{"endpoint": "root://h:1094", "path": "//data"}],
                                "write_lan": [{"endpoint": "root://h:1094", "path": "/"}]}},
    "DIR_SE": {"arprotocols": {"read_lan": [{"endpoint": "file://localhost", "path": "/se/dir"}]}},
    "ND_SE": {"is_deterministic": False, "arprotocols": {}},
}  # fmt: skip


def test_surl_for_xrootd_and_directory_endpoints():
    rel = infosys.rucio_path("s", "f")
    assert infosys.surl(ENDPOINTS, "ROOT_SE", "s", "f", "in") == f"root://h:1094//data/{rel}"
    assert infosys.surl(ENDPOINTS, "ROOT_SE", "s", "f", "out") == f"root://h:1094//{rel}"
    url = infosys.surl(ENDPOINTS, "DIR_SE", "s", "f", "in")
    assert url == f"file://localhost/se/dir/{rel}" and infosys.local_path(url) == f"/se/dir/{rel}"


@pytest.mark.parametrize(
    ("ddm", "kind", "code"), [("NOPE", "in", 1133), ("ND_SE", "in", 1329), ("DIR_SE", "out", 1313)]
)
def test_surl_errors(ddm, kind, code):
    with pytest.raises(PilotFailure) as exc:
        infosys.surl(ENDPOINTS, ddm, "s", "f", kind)
    assert exc.value.code == code


def test_copytools_per_activity_then_classic_keys():
    qd = {"nickname": "Q", "acopytools": {"pr": ["xrdcp"], "pw": ["cp", "xrdcp"], "default": ["mv"]}}
    assert infosys.copytools(qd, "in") == ["xrdcp"]
    assert infosys.copytools(qd, "out") == ["cp", "xrdcp"]
    assert infosys.copytools(qd, "log") == ["mv"]
    assert infosys.copytools({"nickname": "Q", "copytoolin": "xrdcp", "copytool": "cp"}, "in") == ["xrdcp"]
    with pytest.raises(PilotFailure) as exc:
        infosys.copytools({"nickname": "Q"}, "out")
    assert exc.value.code == 1133


def test_queuedata_from_a_file_and_its_checks(tmp_path: Path):
    path = tmp_path / "q.json"
    path.write_text('{"Q": {"nickname": "Q", "state": "ACTIVE", "status": "online"}}')
    assert infosys.queuedata(str(path), "Q")["nickname"] == "Q"
    for text, code in (('{"nickname": "Q", "state": "INACTIVE"}', 1359), ('{"nickname": "Q", "status": "offline"}', 1386),
                       ('{"nickname": "P"}', 1117), ("not json", 1117)):  # fmt: skip
        path.write_text(text)
        with pytest.raises(PilotFailure) as exc:
            infosys.queuedata(str(path), "Q")
        assert exc.value.code == code, text
    with pytest.raises(PilotFailure) as exc:
        infosys.queuedata(str(tmp_path / "missing.json"), "Q")
    assert exc.value.code == 1116


def test_queue_environ_for_the_payload():
    assert infosys.environ({"environ": "A=1 B=x=y bad-key=2 C"}) == {"A": "1", "B": "x=y"}


def test_options_from_command_line_environment_and_defaults():
    cfg = config.parse(["-q", "Q", "--heartbeat", "5"], {"PILOT_HEARTBEAT": "99", "PILOT_KILL_GRACE": "3",
                                                          "X509_USER_PROXY": "/p", "X509_CERT_DIR": "/ca"})  # fmt: skip
    assert (cfg.heartbeat, cfg.kill_grace, cfg.proxy, cfg.ca_dir, cfg.getjob_requests) == (
        5.0,
        3.0,
        "/p",
        "/ca",
        2,
    )
    assert cfg.recovery_min_age == 10.0  # two heartbeats
    assert cfg.queuedata_source == "https://localhost:25443/cache/schedconfig/{pandaqueue}.all.json"
    assert config.parse(["-q", "Q", "--no-recovery", "--baseurls", "http://a/, http://b/"], {}).baseurls == (
        "http://a/", "http://b/")  # fmt: skip


def test_help_names_each_variable_and_default(capsys):
    with pytest.raises(SystemExit):
        config.parse(["--help"], {})
    text = capsys.readouterr().out
    assert "PILOT_HEARTBEAT" in text and "default 1800.0" in text and "X509_USER_PROXY" in text


def test_lfns_replaced_by_turls_only_as_whole_names():
    turls = {"in1.dat": "root://h//p/in1.dat"}
    assert replace_lfns("-c 'cat in1.dat xin1.dat d/in1.dat' --in=a,in1.dat", turls) == (
        "-c 'cat root://h//p/in1.dat xin1.dat d/in1.dat' --in=a,root://h//p/in1.dat")  # fmt: skip


def test_error_codes_are_the_real_pilot_numbers():
    assert (
        ERRORS[1144][0] == "PANDAKILL"
        and ERRORS[1150][0] == "LOOPINGJOB"
        and ERRORS[1151][0] == "STAGEINTIMEOUT"
    )
    assert ERRORS[1171][0] == "GETADMISMATCH" and ERRORS[1158][0] == "LOSTJOBMAXEDOUT"
    assert (exit_code(0), exit_code(1150), exit_code(1098), exit_code(1385)) == (0, 1, 69, 82)
    with pytest.raises(ValueError):
        PilotFailure(4242)
