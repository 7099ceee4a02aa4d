"""The pilot's job-signature options and error code (what it does with them: tests/e2e/pilot_runs/
test_pilot_signing.py)."""

from __future__ import annotations

import pytest

from pilot import config
from pilot.errors import CODES, ERRORS, PilotFailure, exit_code


def test_defaults_refuse_unsigned_jobs_and_fetch_the_key():
    cfg = config.parse(["-q", "Q"], {})
    assert (cfg.job_key, cfg.unsigned_jobs) == (None, "refuse")


def test_options_from_command_line_and_environment():
    env = {"PILOT_JOB_KEY": "/etc/panda/jobsign-pub.pem", "PILOT_UNSIGNED_JOBS": "allow"}
    cfg = config.parse(["-q", "Q"], env)
    assert (cfg.job_key, cfg.unsigned_jobs) == ("/etc/panda/jobsign-pub.pem", "allow")
    cfg = config.parse(["-q", "Q", "--job-key", "k.pem", "--unsigned-jobs", "refuse"], env)
    assert (cfg.job_key, cfg.unsigned_jobs) == ("k.pem", "refuse")


def test_unknown_unsigned_jobs_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        config.parse(["-q", "Q", "--unsigned-jobs", "maybe"], {})
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="PILOT_UNSIGNED_JOBS must be one of refuse, allow, not 'yes'"):
        config.parse(["-q", "Q"], {"PILOT_UNSIGNED_JOBS": "yes"})


def test_help_explains_the_signature_options(capsys):
    with pytest.raises(SystemExit):
        config.parse(["--help"], {})
    text = " ".join(capsys.readouterr().out.split())
    assert "--job-key FILE" in text and "PILOT_JOB_KEY" in text and "/cache/jobsign-pub.pem" in text
    assert "--unsigned-jobs {refuse,allow}" in text and "PILOT_UNSIGNED_JOBS; default 'refuse'" in text
    assert "1390 BADJOBSIGNATURE" in text and "verified against the signature" in text


def test_bad_job_signature_code():
    assert CODES["BADJOBSIGNATURE"] == 1390
    assert ERRORS[1390] == ("BADJOBSIGNATURE", "Job specification signature does not verify")
    assert PilotFailure(1390).diag == "Job specification signature does not verify"
    assert exit_code(1390) == 1
