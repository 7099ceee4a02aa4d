"""WLCG bearer tokens over the real server: HTTPS without a client certificate, `Authorization:
Bearer <jwt>` minted with the test PKI's local issuer key (tests/support/server.py trusts it).

A pilot token gets and updates jobs; a user token submits jobs owned by its S25 DN; expired,
wrong-audience, forged, untrusted and unsigned tokens are refused with the reason and change
nothing; a token over plain HTTP gives no identity."""

from __future__ import annotations

import datetime as dt
import json

import jwt
import pytest
import sqlalchemy as sa

from client import api
from client.config import ClientConfig
from panda_server import pki as pki_mod
from panda_server import tokens
from panda_server.db import tables as t
from panda_server.protocol import wire
from tests.wire.helpers import (
    ANALY_SITE,
    TIMEOUT,
    activated,
    job_row,
    json_text,
    legacy,
    reply,
    submit,
    user_job,
    v1,
)

SITE = ANALY_SITE
TOKEN_DN = "/CN=Jane Doe/CN=nickname:jdoe"


@pytest.fixture(scope="module")
def foreign_key(tmp_path_factory):
    """An RSA key the server does not trust, to forge tokens in the local issuer's name."""
    d = tmp_path_factory.mktemp("foreign-issuer")
    pki_mod.ensure_keypair(d / "key.pem", d / "pub.pem")
    return d / "key.pem"


def mint(live, *, key=None, **kwargs) -> str:
    args = dict(issuer=tokens.LOCAL_ISSUER, subject="jdoe", audience="pandaserver", name="Jane Doe",
                preferred_username="jdoe", groups=["/atlas"])  # fmt: skip
    args.update(kwargs)
    return tokens.mint(key or live.pki.token_issuer_key, **args)


def pilot_token(live, **kwargs) -> str:
    return mint(live, subject="pilot-robot", name=None, preferred_username=None,
                groups=["/atlas", "/atlas/pilot"], **kwargs)  # fmt: skip


def bearer(live, token: str):
    """HTTPS without a client certificate, the token on every request."""
    s = live.session(None)
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def snapshot(engine):
    """Everything a refused call must leave alone."""
    with engine.connect() as conn:
        jobs = sorted(
            (name, r.PandaID, r.jobStatus, r.modificationTime, r.modificationHost)
            for name, tb in t.JOB_TABLE.items()
            for r in conn.execute(sa.select(tb))
        )
        counts = {
            tb.name: conn.execute(sa.select(sa.func.count()).select_from(tb)).scalar_one()
            for tb in (t.filestable4, t.metatable, t.users, t.jobparamstable)
        }
    return jobs, counts


# --- accepted -------------------------------------------------------------------------------


def test_pilot_token_gets_and_updates_a_job_without_a_certificate(live, clean_db):
    [pid] = activated(clean_db, [user_job()])
    with bearer(live, pilot_token(live)) as s:
        out = reply(legacy(s, live.https_url, "getJob", siteName=SITE, prodSourceLabel="user"))
        assert (out["StatusCode"], out["PandaID"]) == ("0", str(pid))
        out = reply(legacy(s, live.https_url, "updateJob", jobId=pid, state="running"))
        assert out["StatusCode"] == "0"
    assert job_row(clean_db, pid)[1]["jobStatus"] == "running"


def test_pilot_token_acquires_jobs_over_api_v1(live, clean_db):
    [pid] = activated(clean_db, [user_job()])
    with bearer(live, pilot_token(live)) as s:
        r = v1(s, live.https_url, "pilot/acquire_jobs", body={"site_name": SITE, "prod_source_label": "user"})
    assert r.status_code == 200, r.text[:300]
    assert [int(j["PandaID"]) for j in r.json()["data"]["jobs"]] == [pid]


def test_scope_is_not_a_role_unless_mapped(live, clean_db):
    """No PANDA_TOKEN_SCOPE_FQANS on the test server: a `panda:pilot` scope grants nothing."""
    activated(clean_db, [user_job()])
    before = snapshot(clean_db)
    with bearer(live, mint(live, scope="panda:pilot")) as s:
        out = reply(
            legacy(s, live.https_url, "getJob", accept_json=True, siteName=SITE, prodSourceLabel="user")
        )
    assert out["StatusCode"] != 0 and "PandaID" not in out
    assert snapshot(clean_db) == before


def test_user_token_submits_jobs_owned_by_its_dn(live, clean_db):
    with bearer(live, mint(live)) as s:
        [[pid, _, _]] = submit(s, live.https_url, [user_job()])
        row = job_row(clean_db, pid)[1]
        assert row["prodUserID"] == TOKEN_DN
        # the same person (S25 clean_user_id drops the nickname) may kill it, with the token...
        [second] = [p for p, _, _ in submit(s, live.https_url, [user_job()])]
        assert json_text(legacy(s, live.https_url, "killJobs", ids=json.dumps([pid]))) == [True]
    # ...or with her certificate: /DC=org/DC=pandawms/OU=Users/CN=Jane Doe is "Jane Doe" too
    with live.session(live.pki.user_proxy) as cert:
        assert json_text(legacy(cert, live.https_url, "killJobs", ids=json.dumps([second]))) == [True]


def test_client_api_sends_the_token_from_the_environment(live, clean_db, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(mint(live) + "\n")
    config = ClientConfig.from_env({"PANDA_URL": f"{live.http_url}/server/panda",
                                    "PANDA_URL_SSL": f"{live.https_url}/server/panda",
                                    "X509_CERT_DIR": str(live.ca_dir), "PANDA_AUTH_TOKEN_FILE": str(token_file)})  # fmt: skip
    assert config.proxy == ""  # a token user need not have a proxy
    status, out = api.submitJobs([user_job()], config)
    assert status == 0, out
    assert job_row(clean_db, out[0][0])[1]["prodUserID"] == TOKEN_DN


def test_user_token_is_not_a_pilot(live, clean_db):
    activated(clean_db, [user_job()])
    before = snapshot(clean_db)
    with bearer(live, mint(live)) as s:
        out = reply(
            legacy(s, live.https_url, "getJob", accept_json=True, siteName=SITE, prodSourceLabel="user")
        )
    assert out["StatusCode"] != 0 and "PandaID" not in out
    assert snapshot(clean_db) == before


# --- refused --------------------------------------------------------------------------------

NOW = dt.datetime.now(dt.UTC)


def _refused_tokens(live, foreign_key):
    return {
        "expired": (pilot_token(live, now=NOW - dt.timedelta(hours=3)), "token expired at"),
        "wrong audience": (pilot_token(live, audience="https://elsewhere.example.org"), "token audience"),
        "forged": (pilot_token(live, key=foreign_key), "token signature does not verify"),
        "untrusted issuer": (
            pilot_token(live, key=foreign_key, issuer="https://evil.example.org"),
            "not trusted",
        ),
        "no expiry": (pilot_token(live, extra={"exp": None}), "token has no expiry"),
        "malformed": ("not-a-jwt", "malformed token"),
    }


@pytest.mark.parametrize(
    "case", ["expired", "wrong audience", "forged", "untrusted issuer", "no expiry", "malformed"]
)
def test_refused_tokens_change_nothing(live, clean_db, foreign_key, case):
    token, reason = _refused_tokens(live, foreign_key)[case]
    [pid] = activated(clean_db, [user_job()])
    before = snapshot(clean_db)
    with bearer(live, token) as s:
        r = legacy(s, live.https_url, "getJob", accept_json=True, siteName=SITE, prodSourceLabel="user")
        out = reply(r)
        assert out["StatusCode"] != 0 and "PandaID" not in out
        assert reason in out["errorDialog"], out
        r2 = legacy(s, live.https_url, "updateJob", accept_json=True, jobId=pid, state="running")
        assert reply(r2)["StatusCode"] != 0
        r3 = legacy(
            s, live.https_url, "submitJobs", accept_json=True, jobs=wire.dump_job_states([user_job()])
        )
        assert reply(r3)["StatusCode"] != 0
        r4 = v1(
            s, live.https_url, "pilot/acquire_jobs", body={"site_name": SITE, "prod_source_label": "user"}
        )
        assert r4.status_code in (401, 403), (r4.status_code, r4.text[:300])
        assert r4.json()["success"] is False and reason in r4.json()["message"]
        for resp in (r, r2, r3, r4):
            assert token not in resp.text  # the reason, never the token
    assert snapshot(clean_db) == before


def test_alg_none_token_is_refused(live, clean_db):
    claims = jwt.decode(pilot_token(live), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    before = snapshot(clean_db)
    with bearer(live, unsigned) as s:
        r = v1(s, live.https_url, "pilot/acquire_jobs", body={"site_name": SITE})
    assert r.status_code in (401, 403) and "token algorithm 'none' not allowed" in r.json()["message"]
    assert snapshot(clean_db) == before


def test_a_token_over_plain_http_gives_no_identity(live, clean_db):
    """Bearer tokens count over HTTPS only, like certificates: HTTP stays passive."""
    activated(clean_db, [user_job()])
    before = snapshot(clean_db)
    with bearer(live, pilot_token(live)) as s:
        r = s.post(f"{live.http_url}/server/panda/getJob", data={"siteName": SITE, "prodSourceLabel": "user"},
                   headers={"Accept": "application/json"}, timeout=TIMEOUT)  # fmt: skip
    out = reply(r)
    assert out["StatusCode"] == 40 and "HTTPS" in out["errorDialog"]
    assert snapshot(clean_db) == before
