"""`panda-ca token`: mints a WLCG token with the PKI's issuer key that verify() accepts."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from panda_server import ca, tokens
from panda_server.settings import Settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ca.PkiPaths:
    return ca.create_pki(tmp_path_factory.mktemp("pki"))


def trusting(pki: ca.PkiPaths, **overrides) -> Settings:
    return Settings(token_issuers=(f"{tokens.LOCAL_ISSUER}={pki.token_issuer_pub}",),
                    token_issuer_vos=(f"{tokens.LOCAL_ISSUER}=atlas",), **overrides)  # fmt: skip


def test_token_printed_verifies(pki, capsys) -> None:
    argv = ["token", "--dir", str(pki.root), "--sub", "jdoe", "--name", "Jane Doe", "--username", "jdoe",
            "--group", "/atlas", "--group", "/atlas/pilot"]  # fmt: skip
    assert ca.main(argv) == 0
    out = capsys.readouterr().out.strip()
    ident = tokens.verify(out, trusting(pki))
    assert ident.dn == "/CN=Jane Doe/CN=nickname:jdoe"
    assert ident.fqans == ("/atlas", "/atlas/Role=pilot")
    assert (ident.subject, ident.issuer) == ("jdoe", tokens.LOCAL_ISSUER)


def test_token_out_file_scope_audience_and_lifetime(pki, tmp_path, capsys) -> None:
    out = tmp_path / "token"
    argv = ["token", "--dir", str(pki.root), "--sub", "robot", "--scope", "panda:pilot", "--hours", "0.5",
            "--aud", "https://panda.example.org", "--out", str(out)]  # fmt: skip
    assert ca.main(argv) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert f"{out}: token for /CN=robot, valid 0.5 h" in capsys.readouterr().out
    s = trusting(
        pki,
        token_audiences=("https://panda.example.org",),
        token_scope_fqans=("panda:pilot=/atlas/Role=pilot",),
    )
    ident = tokens.verify(out.read_text().strip(), s)
    assert ident.fqans == ("/atlas/Role=pilot",)
    left = (ident.expires - tokens.dt.datetime.now(tokens.dt.UTC)).total_seconds()
    assert 1700 < left <= 1800
    # the default audience list does not hold it
    with pytest.raises(tokens.TokenError, match="audience"):
        tokens.verify(out.read_text().strip(), trusting(pki))


def test_help_explains() -> None:
    env = {**os.environ, "COLUMNS": "250"}  # no wrapping inside the issuer URL
    run = [sys.executable, "-m", "panda_server.ca"]
    proc = subprocess.run([*run, "token", "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0
    for word in (
        "Bearer",
        "PANDA_TOKEN_ISSUERS",
        "--sub",
        "--group",
        "/atlas/Role=pilot",
        tokens.LOCAL_ISSUER,
    ):
        assert word in proc.stdout, word
    top = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert top.returncode == 0 and "token" in top.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: --sub"),
        (
            ["--sub", "x", "--hours", "0"],
            "panda-ca: error: --hours must be more than 0 and at most 8760 (a year), not 0",
        ),
        (["--sub", "x", "--hours", "inf"], "at most 8760 (a year), not inf"),
        (["--sub", "x", "--hours", "soon"], "invalid float value"),
    ],
)
def test_bad_arguments_exit_2(pki, capsys, args, message) -> None:
    assert ca.main(["token", "--dir", str(pki.root), *args]) == 2
    err = capsys.readouterr().err
    assert message in err


def test_missing_key_exits_2_with_one_line(tmp_path, capsys) -> None:
    assert ca.main(["token", "--dir", str(tmp_path / "nopki"), "--sub", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `panda-ca init` first" in err
