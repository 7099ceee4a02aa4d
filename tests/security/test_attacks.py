"""The attack suite (issue 4): every attack is refused with a clear error and persists nothing.

Each case runs against the real server (gunicorn, mTLS, PostgreSQL) and compares a snapshot of
everything an active call could change before and after. The two attacks that play out on a
worker node live beside the pilot tests they need:
  * tampered `jobPars` in the DB → the pilot refuses the job (tests/e2e/pilot_runs/test_pilot_signing.py);
  * the payload reading the pilot's proxy fails (tests/e2e/pilot_runs/test_proxy_concealment.py).
"""

from __future__ import annotations

import gzip
import json
import ssl
import time

import pytest
import requests
import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.protocol import wire
from tests.wire.helpers import (
    ANALY_SITE,
    OTHER_DN,
    TIMEOUT,
    USER_DN,
    activated,
    envelope,
    force_status,
    job_row,
    legacy,
    reply,
    simple_job,
    snapshot,
    user_job,
    v1,
)


@pytest.fixture
def jobs(live, clean_db):
    """Jane's activated job, John's activated job, and Jane's running job."""
    [janes, running] = activated(clean_db, [user_job(), user_job()])
    [johns] = activated(clean_db, [user_job()], dn=OTHER_DN)
    force_status(clean_db, running, "running")
    return janes, johns, running


def session(live, cert=None, token=None) -> requests.Session:
    s = live.session(cert)
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def attempts(live, s: requests.Session, jobs, base=None):
    """The active calls an attacker would try: submit, kill, getJob, updateJob, v1 submit. Yields
    (what, refusal message or None if accepted)."""
    janes, johns, running = jobs
    base = base or live.https_url
    states = wire.dump_job_states([user_job()])
    calls = [
        ("submitJobs", lambda: legacy(s, base, "submitJobs", accept_json=True, jobs=states)),
        ("killJobs", lambda: legacy(s, base, "killJobs", accept_json=True, ids=json.dumps([janes, johns]))),
        ("getJob", lambda: legacy(s, base, "getJob", accept_json=True, siteName=ANALY_SITE, prodSourceLabel="user")),
        ("updateJob", lambda: legacy(s, base, "updateJob", accept_json=True, jobId=running, state="finished")),
    ]  # fmt: skip
    for what, call in calls:
        out = reply(call())
        yield what, str(out.get("StatusCode")), out.get("errorDialog", "")
    r = v1(s, base, "job/submit", body={"jobs": states})
    body = envelope(r, r.status_code)
    yield "v1 job/submit", str(r.status_code), body["message"]


def assert_refused(live, clean_db, s, jobs, status, words, base=None):
    before = snapshot(clean_db)
    for what, code, message in attempts(live, s, jobs, base):
        expected = "403" if what.startswith("v1") else status
        assert code == expected, (what, code, message)
        assert words in message, (what, message)
    assert snapshot(clean_db) == before


# --- identity: certificates and proxies -------------------------------------------------------


def test_no_certificate(live, clean_db, jobs):
    with session(live) as s:
        assert_refused(live, clean_db, s, jobs, "40", "needs HTTPS with a client certificate")


def test_active_call_over_http(live, clean_db, jobs):
    with session(live, live.pki.production_proxy) as s:  # a perfectly good proxy, sent over HTTP
        assert_refused(live, clean_db, s, jobs, "40", "needs HTTPS", base=live.http_url)


def _handshake_refused(live, clean_db, cert, words):
    before = snapshot(clean_db)
    with session(live, cert) as s:
        with pytest.raises(requests.exceptions.SSLError) as info:
            legacy(s, live.https_url, "killJobs", ids="[1]")
    assert any(w in str(info.value).lower() for w in words), str(info.value)
    assert snapshot(clean_db) == before


def test_untrusted_ca(live, clean_db, attack):
    _handshake_refused(live, clean_db, attack.files["untrusted_ca"], ("unknown ca", "unknown_ca"))


def test_expired_certificate(live, clean_db, attack):
    _handshake_refused(
        live, clean_db, attack.files["expired_cert"], ("certificate expired", "certificate_expired")
    )


def test_expired_proxy(live, clean_db, attack):
    from panda_server import ca

    proxy = ca.load_certs(attack.files["expiring_proxy"])[0]
    wait = (proxy.not_valid_after_utc.timestamp() - time.time()) + 1.5
    assert wait < 5
    time.sleep(max(wait, 0))
    _handshake_refused(
        live, clean_db, attack.files["expiring_proxy"], ("certificate expired", "certificate_expired")
    )


def test_limited_proxy_on_active_calls(live, clean_db, jobs, attack):
    with session(live, attack.files["limited"]) as s:
        assert_refused(live, clean_db, s, jobs, "70", "limited proxies cannot make active calls")


@pytest.mark.parametrize(
    ("cred", "words"),
    [
        ("forged_voms", "forged or altered"),
        ("untrusted_voms", "is not trusted for VO atlas"),
        ("stolen_ac", "not to this certificate's owner"),
    ],
)
def test_bad_voms_attributes(live, clean_db, jobs, attack, cred, words):
    """A production role claimed by a forged AC, an AC of an unknown VOMS server, or Jane's AC in
    John's proxy: every active call is refused, the claimed role never takes effect."""
    with session(live, attack.files[cred]) as s:
        assert_refused(live, clean_db, s, jobs, "70", words)


def test_proxy_without_voms_attributes(live, clean_db, jobs, attack):
    with session(live, attack.files["no_voms"]) as s:
        assert_refused(live, clean_db, s, jobs, "70", "no VOMS attributes of a VO authorized for PanDA")


# --- roles and ownership --------------------------------------------------------------------


def test_user_without_pilot_role_calling_get_job(live, clean_db, jobs):
    before = snapshot(clean_db)
    with session(live, live.pki.user_proxy) as s:
        out = reply(legacy(s, live.https_url, "getJob", accept_json=True, siteName=ANALY_SITE,
                           prodSourceLabel="user", prodUserID=USER_DN))  # fmt: skip
        assert out["StatusCode"] == 60 and "needs the pilot or production role" in out["errorDialog"]
        out = reply(legacy(s, live.https_url, "updateJob", accept_json=True, jobId=jobs[2], state="finished"))
        assert out["StatusCode"] == 60
        r = v1(s, live.https_url, "pilot/acquire_jobs", body={"site_name": ANALY_SITE})
        assert "pilot or production role" in envelope(r, 403)["message"]
    assert snapshot(clean_db) == before


def test_user_submitting_a_managed_job(live, clean_db, jobs):
    before = snapshot(clean_db)
    managed = wire.dump_job_states([simple_job("CLOUDA_T1", label="managed")])
    with session(live, live.pki.user_proxy) as s:
        out = reply(legacy(s, live.https_url, "submitJobs", accept_json=True, jobs=managed))
        assert out["StatusCode"] == 60 and "managed needs the production role" in out["errorDialog"]
        r = v1(s, live.https_url, "job/submit", body={"jobs": managed})
        assert "managed needs the production role" in envelope(r, 403)["message"]
    assert snapshot(clean_db) == before
    with session(live, live.pki.production_proxy) as s:  # the same with the production role: accepted
        r = legacy(s, live.https_url, "submitJobs", accept_json=True, jobs=managed)
        assert r.status_code == 200 and json.loads(r.text)[0][0] > 0


def test_user_killing_another_users_job(live, clean_db, jobs, attack):
    janes, johns, _ = jobs
    before = snapshot(clean_db)
    with session(live, attack.files["john"]) as s:
        assert json.loads(legacy(s, live.https_url, "killJobs", ids=json.dumps([janes])).text) == [False]
        assert envelope(v1(s, live.https_url, "job/kill", body={"job_ids": [janes]}))["data"] == [False]
    assert snapshot(clean_db) == before
    with session(live, live.pki.production_proxy) as s:  # the production role may kill anybody's
        assert json.loads(legacy(s, live.https_url, "killJobs", ids=json.dumps([johns])).text) == [True]
    assert job_row(clean_db, johns)[1]["jobStatus"] == "cancelled"


def test_disabled_user(live, clean_db, jobs, attack):
    with session(live, live.pki.user_proxy) as s:  # Jane is known (she owns jobs); disable her
        with clean_db.begin() as conn:
            conn.execute(sa.update(t.users).where(t.users.c.dn == USER_DN).values(status="disabled"))
        assert_refused(live, clean_db, s, jobs, "70", "is disabled")
        with session(live, token=attack.tokens["good_user"]) as by_token:  # the same person, by token
            assert_refused(live, clean_db, by_token, jobs, "70", "is disabled")
        with clean_db.begin() as conn:
            conn.execute(sa.update(t.users).where(t.users.c.dn == USER_DN).values(status="active"))
        r = legacy(s, live.https_url, "killJobs", ids=json.dumps([jobs[0]]))
        assert json.loads(r.text) == [True]  # enabled again: accepted


# --- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("expired", "token expired at"),
        ("forged", "token signature does not verify"),
        ("wrong_audience", "not accepted"),
    ],
)
def test_bad_tokens(live, clean_db, jobs, attack, token, words):
    with session(live, token=attack.tokens[token]) as s:
        assert_refused(live, clean_db, s, jobs, "70", words)
        for what, _, message in attempts(live, s, jobs):
            assert attack.tokens[token] not in message, what  # the token is never echoed


def test_good_token_without_roles_may_not_get_jobs(live, clean_db, jobs, attack):
    before = snapshot(clean_db)
    with session(live, token=attack.tokens["good_user"]) as s:
        out = reply(
            legacy(s, live.https_url, "getJob", accept_json=True, siteName=ANALY_SITE, prodSourceLabel="user")
        )
        assert out["StatusCode"] == 60
    assert snapshot(clean_db) == before


# --- request hardening ----------------------------------------------------------------------


def test_gzip_bomb(live, clean_db, jobs):
    before = snapshot(clean_db)
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    with session(live, live.pki.pilot_proxy) as s:
        r = s.post(f"{live.https_url}/server/panda/updateJob", data=bomb, timeout=60,
                   headers={"Content-Type": "application/json", "Accept": "application/json"})  # fmt: skip
        out = reply(r)
        assert out["StatusCode"] == 30 and "decompressed body exceeds" in out["errorDialog"]
        r = s.post(f"{live.https_url}/api/v1/job/submit", data=bomb, timeout=60,
                   headers={"Content-Type": "application/json"})  # fmt: skip
        assert "exceeds" in envelope(r, 400)["message"]
    assert snapshot(clean_db) == before


def test_oversized_form(live, clean_db, jobs):
    before = snapshot(clean_db)
    big = "x" * (17 * 1024 * 1024)
    with session(live, live.pki.user_proxy) as s:
        r = s.post(f"{live.https_url}/server/panda/submitJobs", data={"jobs": big}, timeout=120)
        assert r.status_code == 413 and "exceeds" in r.text
    assert snapshot(clean_db) == before


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"siteName": "x" * 70000}, "at most 65536"),
        ({"siteName": "ANALY\x00"}, "NUL character"),
        ({f"p{i}": "1" for i in range(300)}, "at most 256"),
        ({"bad name;": "1"}, "bad parameter name"),
    ],
)
def test_parameters_are_validated(live, clean_db, jobs, params, words):
    before = snapshot(clean_db)
    with session(live, live.pki.pilot_proxy) as s:
        out = reply(legacy(s, live.https_url, "getJob", accept_json=True, **params))
        assert out["StatusCode"] == 30 and words in out["errorDialog"], out
        r = v1(s, live.https_url, "pilot/acquire_jobs", body=params)
        assert words in envelope(r, 400)["message"]
    assert snapshot(clean_db) == before


SQL_PAYLOADS = ["' OR '1'='1", "'; DROP TABLE jobsactive4; --", '"); DELETE FROM users; --', "\\'%_*"]

# every method with the string parameters it reads (ids-typed ones get metacharacters too)
LEGACY_STRING_PARAMS = {
    "getJob": ["siteName", "prodSourceLabel", "node", "computingElement", "schedulerID", "prodUserID", "mem",
               "diskSpace", "nJobs", "cpu", "workingGroup"],
    "updateJob": ["jobId", "state", "node", "pilotErrorDiag", "exeErrorDiag", "xml", "metaData", "schedulerID",
                  "pilotID", "batchID", "jobMetrics", "transExitCode", "pilotErrorCode", "coreCount", "timestamp"],
    "getStatus": ["ids"], "checkJobStatus": ["ids"], "submitJobs": ["jobs"], "getJobStatus": ["ids"],
    "getFullJobStatus": ["ids"], "killJobs": ["ids", "code"], "reassignJobs": ["ids"], "queryPandaIDs": ["ids"],
    "getSiteSpecs": ["siteType"], "getJobStatisticsPerSite": ["siteName"], "getCloudSpecs": ["cloud"],
    "datasetCompleted": ["vuid", "site"],
}  # fmt: skip
V1_STRING_PARAMS = {
    "job/submit": ["jobs"], "job/get_status": ["job_ids"], "job/get_description": ["job_ids"],
    "job/get_description_incl_archive": ["job_ids"], "job/kill": ["job_ids", "code"], "job/reassign": ["job_ids"],
    "pilot/acquire_jobs": ["site_name", "prod_source_label", "node", "computing_element", "n_jobs", "mem"],
    "pilot/update_job": ["job_id", "job_status", "node", "pilot_error_diag", "batch_id", "attempt_nr"],
    "pilot/get_job_status": ["job_ids"],
}  # fmt: skip


def test_sql_metacharacters_in_every_string_parameter(live, clean_db, jobs):
    """No 500, a clear answer, nothing changed: for each method, each parameter, each payload."""
    from panda_server.web import api_v1
    from panda_server.web import legacy as legacy_web

    assert set(LEGACY_STRING_PARAMS) >= set(legacy_web.METHODS) - {"isAlive", "getServer"}
    assert set(V1_STRING_PARAMS) >= {m for m in api_v1.METHODS if m not in ("system/is_alive",
                                                                           "metaconfig/get_site_specs")}  # fmt: skip
    janes, _, running = jobs
    before = snapshot(clean_db)
    n = 0
    with session(live, live.pki.production_proxy) as s:  # the most powerful caller there is
        for method, names in LEGACY_STRING_PARAMS.items():
            base = {"updateJob": {"jobId": "987654321", "state": "running"},
                    "getJob": {"siteName": "NO_SUCH_SITE"}}.get(method, {})  # fmt: skip
            for name in names:
                for payload in SQL_PAYLOADS:
                    r = legacy(s, live.https_url, method, accept_json=True, **{**base, name: payload})
                    assert r.status_code in (200, 403), (method, name, payload, r.status_code, r.text[:300])
                    n += 1
        for api, names in V1_STRING_PARAMS.items():
            base = {"pilot/update_job": {"job_id": 987654321, "job_status": "running"},
                    "pilot/acquire_jobs": {"site_name": "NO_SUCH_SITE"}}.get(api, {})  # fmt: skip
            for name in names:
                for payload in SQL_PAYLOADS:
                    r = v1(s, live.https_url, api, body={**base, name: payload})
                    assert r.status_code in (200, 400, 403, 404), (
                        api,
                        name,
                        payload,
                        r.status_code,
                        r.text[:300],
                    )
                    envelope(r, r.status_code)
                    n += 1
    names = [*LEGACY_STRING_PARAMS.values(), *V1_STRING_PARAMS.values()]
    assert n == len(SQL_PAYLOADS) * sum(len(x) for x in names)
    assert snapshot(clean_db) == before
    # and where a string is meant to be stored, it is stored as the literal text it was
    with session(live, live.pki.pilot_proxy) as s:
        for payload in SQL_PAYLOADS:
            out = reply(legacy(s, live.https_url, "updateJob", accept_json=True, jobId=running, state="running",
                               node=payload))  # fmt: skip
            assert out["StatusCode"] == 0
            assert job_row(clean_db, running)[1]["modificationHost"] == payload
    assert job_row(clean_db, janes)[1]["jobStatus"] == "activated"


# --- transport ------------------------------------------------------------------------------


def _handshake(live, version) -> str:
    """Version negotiated by a client that offers only `version` (no client certificate)."""
    import socket
    import urllib.parse

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    port = urllib.parse.urlsplit(live.https_url).port
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_below_1_2_is_refused(live):
    assert _handshake(live, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"  # the same client, offering 1.2: fine
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError):
            _handshake(live, old)


def test_hsts_on_https_only(live):
    with session(live, live.pki.user_proxy) as s:
        r = s.get(f"{live.https_url}/server/panda/isAlive", timeout=TIMEOUT)
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")
        r = s.get(f"{live.http_url}/server/panda/isAlive", timeout=TIMEOUT)
        assert "Strict-Transport-Security" not in r.headers


def test_logs_name_the_user_and_hold_no_secrets(live, clean_db, jobs, attack):
    """After the attacks above (same server), the log names callers and carries no key or token."""
    janes = jobs[0]
    with session(live, live.pki.user_proxy) as s:
        legacy(s, live.https_url, "killJobs", ids=json.dumps([janes]))
    with session(live, token=attack.tokens["forged"]) as s:
        legacy(s, live.https_url, "killJobs", ids=json.dumps([janes]))
    deadline = time.monotonic() + 10
    text = ""
    while time.monotonic() < deadline:  # gunicorn writes through; bounded wait for the lines
        text = "".join(p.read_text(errors="replace") for p in live.logs.glob("*.log"))
        if f"user={USER_DN} killJobs" in text:
            break
        time.sleep(0.2)
    assert f"user={USER_DN} killJobs from" in text
    assert "bearer token refused" in text or "token signature" in text
    for secret in [*attack.tokens.values(), "PRIVATE KEY"]:
        assert secret not in text
    for key_file in (live.pki.userkey, live.pki.pilotkey, live.pki.jobsign_key, live.pki.token_issuer_key):
        body = "".join(key_file.read_text().splitlines()[1:-1])
        assert body[:64] not in text.replace("\n", "")
