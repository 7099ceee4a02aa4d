"""The pilot's job-signature options, its decision on a verification's verdict, and the error code
(what it does with them: tests/e2e/pilot_runs/test_pilot_signing.py)."""

from __future__ import annotations

import pytest

from panda_server.protocol.signing import Verdict
from pilot import config
from pilot.errors import CODES, ERRORS, PilotFailure, exit_code
from pilot.lifecycle import signature_refusal as refusal

VERIFIED = Verdict(True)
UNSIGNED = Verdict(False, "no signature: the job came without jobSignature", unsigned=True)
CHANGED = Verdict(False, "signature does not match: the job specification was changed after submission")


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
    assert (
        "an unsigned job under identity switching (a queue with glexec, or a root pilot with --user-map), "
        "whatever this option says" in text
    )


@pytest.mark.parametrize("unsigned_jobs", ["refuse", "allow"])
@pytest.mark.parametrize("identity_switching", [False, True])
def test_a_verified_job_runs_and_a_changed_one_never(unsigned_jobs, identity_switching):
    options = {"unsigned_jobs": unsigned_jobs, "identity_switching": identity_switching}
    assert refusal(VERIFIED, **options) is None
    assert refusal(CHANGED, **options) == CHANGED.reason


def test_an_unsigned_job_runs_only_when_allowed_on_a_queue_without_identity_switching():
    assert refusal(UNSIGNED, unsigned_jobs="allow", identity_switching=False) is None
    assert refusal(UNSIGNED, unsigned_jobs="refuse", identity_switching=False) == (
        f"{UNSIGNED.reason} (the pilot runs unsigned jobs only with --unsigned-jobs allow)"
    )


@pytest.mark.parametrize("unsigned_jobs", ["refuse", "allow"])
def test_an_unsigned_job_is_refused_on_a_glexec_queue_whatever_unsigned_jobs_says(unsigned_jobs):
    """There prodUserID picks the payload's account: an unsigned one could name anybody."""
    diag = refusal(UNSIGNED, unsigned_jobs=unsigned_jobs, identity_switching=True)
    assert diag is not None and diag.startswith(UNSIGNED.reason)
    assert "owner's account (identity switching), which only a signed prodUserID may choose" in diag
    assert "unsigned jobs are refused whatever --unsigned-jobs says" in diag


def test_no_key_on_a_glexec_queue_refuses_even_with_unsigned_jobs_allow():
    no_key = Verdict(False, "cannot verify the signature: cannot read --job-key k.pem", unsigned=True)
    assert refusal(no_key, unsigned_jobs="allow", identity_switching=False) is None
    assert refusal(no_key, unsigned_jobs="allow", identity_switching=True).startswith(no_key.reason)


def test_bad_job_signature_code():
    assert CODES["BADJOBSIGNATURE"] == 1390
    assert ERRORS[1390] == ("BADJOBSIGNATURE", "Job specification signature does not verify")
    assert PilotFailure(1390).diag == "Job specification signature does not verify"
    assert exit_code(1390) == 1
