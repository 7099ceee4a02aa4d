"""Who gets in: HTTPS with a verified client certificate for everything active, passive reads over
plain HTTP, untrusted CAs refused in the handshake, limited proxies refused by /api/v1, bounded
request bodies. Every refusal is checked to have changed nothing in the DB."""

from __future__ import annotations

import gzip
import json
import urllib.parse

import pytest
import requests

from panda_server.protocol import wire
from panda_server.web import api_v1, legacy
from panda_server.web.policy import POLICY
from tests.wire.helpers import (
    ANALY_SITE,
    TIMEOUT,
    activated,
    envelope,
    force_status,
    job_row,
    reply,
    snapshot,
    urlencoded,
    user_job,
)

SITE = ANALY_SITE
BIG = 16 * 1024 * 1024  # Settings.max_body_bytes default, as the test server runs


def v1_body(waiting, running):
    """Parameters that would change something if a v1 call were let through."""
    return {**V1_BODY, "job_ids": [waiting, running], "job_id": running,
            "jobs": wire.dump_job_states([user_job()])}  # fmt: skip


@pytest.fixture
def jobs(live, clean_db):
    """One activated and one running job of Jane's."""
    waiting, running = activated(clean_db, [user_job(), user_job()])
    force_status(clean_db, running, "running")
    return waiting, running


def legacy_params(method, waiting, running):
    """Parameters that would change something if the call were let through."""
    ids = json.dumps([waiting, running])
    params = {
        "getJob": {"siteName": SITE, "prodSourceLabel": "user"},
        "updateJob": {"jobId": running, "state": "finished", "node": "evil"},
        "getStatus": {"ids": f"{waiting} {running}"},
        "checkJobStatus": {"ids": f"{waiting} {running}"},
        "submitJobs": {"jobs": wire.dump_job_states([user_job()])},
        "getFullJobStatus": {"ids": ids},
        "killJobs": {"ids": ids},
        "reassignJobs": {"ids": ids},
        "datasetCompleted": {"vuid": "00000000-0000-0000-0000-000000000000", "site": "CLOUDA_T1_DATADISK"},
    }
    return params[method]  # a new secure method must be added here


V1_BODY = {"site_name": SITE, "prod_source_label": "user", "job_status": "finished", "node": "evil"}

SECURE_LEGACY = sorted(
    k.rsplit("/", 1)[1] for k, p in POLICY.items() if k.startswith("/server/panda/") and p.secure
)
PASSIVE_LEGACY = sorted(
    k.rsplit("/", 1)[1] for k, p in POLICY.items() if k.startswith("/server/panda/") and not p.secure
)
SECURE_V1 = sorted(k for k in api_v1.METHODS if POLICY[f"/api/v1/{k}"].secure)
PASSIVE_V1 = sorted(k for k in api_v1.METHODS if not POLICY[f"/api/v1/{k}"].secure)


def test_the_secure_and_passive_lists_are_not_empty():
    assert {"getJob", "updateJob", "submitJobs", "killJobs", "reassignJobs"} <= set(SECURE_LEGACY)
    assert {"isAlive", "getServer"} <= set(PASSIVE_LEGACY)
    assert set(SECURE_LEGACY) | set(PASSIVE_LEGACY) == set(legacy.METHODS)
    assert {"job/submit", "job/kill", "pilot/update_job", "pilot/acquire_jobs"} <= set(SECURE_V1)


# --- plain HTTP and HTTPS without a certificate ---------------------------------------------


def _insecure_sessions(live):
    """(base URL, session): HTTP presenting the pilot proxy (ignored), HTTPS without any."""
    return [(live.http_url, live.session(live.pki.pilot_proxy)), (live.https_url, live.session(None))]


@pytest.mark.parametrize("method", SECURE_LEGACY)
@pytest.mark.parametrize("how", ["form", "get", "json"])
def test_secure_legacy_methods_refuse_insecure_callers_with_40(live, clean_db, jobs, method, how):
    waiting, running = jobs
    before = snapshot(clean_db)
    params = legacy_params(method, waiting, running)
    for base, session in _insecure_sessions(live):
        url = f"{base}/server/panda/{method}"
        if how in ("form", "get"):
            r = session.request("POST" if how == "form" else "GET", url, timeout=TIMEOUT,
                                data=params if how == "form" else None, params=params if how == "get" else None)  # fmt: skip
            out = urlencoded(r) if method != "checkJobStatus" else r.json()  # checkJobStatus: always JSON
            assert str(out["StatusCode"]) == "40", (base, out)
        else:
            r = session.post(url, data=gzip.compress(json.dumps(params).encode()), timeout=TIMEOUT,
                             headers={"Content-Type": "application/json", "Accept": "application/json"})  # fmt: skip
            out = reply(r)
            if method != "getStatus":  # getStatus always answers urlencoded
                assert out["StatusCode"] == 40, (base, out)
                assert "HTTPS" in out["errorDialog"]
            else:
                assert out["StatusCode"] == "40"
        assert r.status_code == 200
        session.close()
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("api", SECURE_V1)
def test_secure_v1_routes_refuse_insecure_callers_with_403(live, clean_db, jobs, api):
    waiting, running = jobs
    before = snapshot(clean_db)
    body = v1_body(waiting, running)
    method = POLICY[f"/api/v1/{api}"].methods[-1]
    for base, session in _insecure_sessions(live):
        r = session.request(method, f"{base}/api/v1/{api}", json=body, timeout=TIMEOUT)
        out = envelope(r, 403)
        assert out["success"] is False and "HTTPS" in out["message"]
        session.close()
    assert snapshot(clean_db) == before


SANDBOX = gzip.compress(b"a tar file, say")


def _passive_url(live, key):
    (live.logs / "cache" / "sandbox.tar.gz").write_bytes(SANDBOX)
    return live.http_url + key.replace("<queue>", "CLOUDA_T1").replace("<path>", "sandbox.tar.gz")


@pytest.mark.parametrize("key", sorted(k for k, p in POLICY.items() if not p.secure))
def test_passive_endpoints_work_over_http_without_a_certificate(live, clean_db, key):
    [pid] = activated(clean_db, [user_job()])
    params = {"ids": json.dumps([pid])}
    with live.session(None) as anonymous:
        method = POLICY[key].methods[0]
        r = anonymous.request(method, _passive_url(live, key), params=params if method == "GET" else None,
                              data=params if method == "POST" else None, timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 200, (key, r.status_code, r.text[:300])
    assert "StatusCode=40" not in r.text
    if key.startswith("/api/v1/") and key != "/api/v1/openapi.json":
        assert r.json()["success"] is True
    if key == "/server/panda/getJobStatus":
        [state] = json.loads(r.text, object_hook=wire.decode_special)
        assert state[0] == pid


def test_cache_reads_over_http(live, clean_db):
    (live.logs / "cache" / "sandbox.tar.gz").write_bytes(SANDBOX)
    with live.session(None) as anonymous:
        qd = anonymous.get(f"{live.http_url}/cache/schedconfig/CLOUDA_T1.all.json", timeout=TIMEOUT).json()
        assert (qd["nickname"], qd["cloud"], qd["ddm"]) == ("CLOUDA_T1", "CLOUDA", "CLOUDA_T1_DATADISK")
        assert (
            anonymous.get(f"{live.http_url}/cache/schedconfig/NOPE.all.json", timeout=TIMEOUT).status_code
            == 404
        )
        assert (
            "CLOUDA_T1_DATADISK"
            in anonymous.get(f"{live.http_url}/cache/ddmendpoints.json", timeout=TIMEOUT).json()
        )
        # a sandbox comes back byte for byte: not marked Content-Encoding gzip (clients would inflate it)
        r = anonymous.get(f"{live.http_url}/cache/sandbox.tar.gz", timeout=TIMEOUT)
        assert r.status_code == 200 and "Content-Encoding" not in r.headers
        assert r.content == SANDBOX
        for escape in ("..%2f..%2fpki/hostkey.pem", "../pki/hostkey.pem", "nothing-here"):
            r = anonymous.get(f"{live.http_url}/cache/{escape}", timeout=TIMEOUT)
            assert r.status_code == 404, escape


# --- untrusted CA ---------------------------------------------------------------------------


@pytest.mark.parametrize("cred", ["untrusted", "untrusted_cert"])
@pytest.mark.parametrize("path", ["/server/panda/isAlive", "/server/panda/getJob", "/api/v1/job/kill"])
def test_untrusted_ca_is_refused_in_the_handshake(live, clean_db, extra_creds, cred, path):
    before = snapshot(clean_db)
    session = live.session(None)
    session.cert = (
        str(extra_creds["untrusted"])
        if cred == "untrusted"
        else (str(extra_creds["untrusted_cert"]), str(extra_creds["untrusted_key"]))
    )
    with session, pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.post(f"{live.https_url}{path}", data={"siteName": SITE, "ids": "[1]"}, timeout=TIMEOUT)
    assert "unknown ca" in str(caught.value).lower() or isinstance(caught.value, requests.exceptions.SSLError)
    assert snapshot(clean_db) == before
    with live.session(live.pki.user_proxy) as fine:  # the server is still fine
        assert fine.get(f"{live.https_url}/server/panda/isAlive", timeout=TIMEOUT).text == "alive=yes"


# --- limited proxies ------------------------------------------------------------------------


@pytest.mark.parametrize("cred", ["limited", "from_limited", "pilot_limited"])
@pytest.mark.parametrize("api", SECURE_V1)
def test_limited_proxies_are_refused_by_api_v1(live, clean_db, jobs, extra_creds, cred, api):
    waiting, running = jobs
    before = snapshot(clean_db)
    body = v1_body(waiting, running)
    method = POLICY[f"/api/v1/{api}"].methods[-1]
    with live.session(extra_creds[cred]) as session:
        r = session.request(method, f"{live.https_url}/api/v1/{api}", json=body, timeout=TIMEOUT)
    out = envelope(r, 403)
    assert out["success"] is False and "limited" in out["message"]
    assert snapshot(clean_db) == before


def test_a_full_proxy_of_the_same_user_is_accepted_by_api_v1(live, clean_db, jobs, extra_creds):
    waiting, _ = jobs
    with live.session(extra_creds["full"]) as session:
        r = session.post(f"{live.https_url}/api/v1/job/kill", json={"job_ids": [waiting]}, timeout=TIMEOUT)
    assert envelope(r)["data"] == [True]
    assert job_row(clean_db, waiting)[1]["jobStatus"] == "cancelled"


@pytest.mark.parametrize("cred", ["limited", "pilot_limited"])
@pytest.mark.parametrize("method", SECURE_LEGACY)
def test_limited_proxies_are_refused_by_active_legacy_methods(
    live, clean_db, jobs, extra_creds, cred, method
):
    """DESIGN §5: limited proxies are refused for every active call, not only /api/v1."""
    waiting, running = jobs
    before = snapshot(clean_db)
    with live.session(extra_creds[cred]) as session:
        r = session.post(f"{live.https_url}/server/panda/{method}", data=legacy_params(method, waiting, running),
                         timeout=TIMEOUT)  # fmt: skip
    if r.headers["Content-Type"].startswith("application/json"):  # checkJobStatus always answers JSON
        reply = {k: str(v) for k, v in r.json().items()}
    else:
        reply = {k: v[0] for k, v in urllib.parse.parse_qs(r.text).items()}
    assert r.status_code == 200 and reply["StatusCode"] == "70", r.text
    assert "limited" in reply["errorDialog"]
    assert snapshot(clean_db) == before


@pytest.mark.parametrize("api", PASSIVE_V1)
def test_limited_proxies_may_still_use_passive_v1_routes(live, extra_creds, api):
    with live.session(extra_creds["limited"]) as session:
        r = session.get(f"{live.https_url}/api/v1/{api}", timeout=TIMEOUT)
    assert envelope(r)["success"] is True


# --- request bodies -------------------------------------------------------------------------


def test_gzip_bomb_is_refused_and_the_server_stays_healthy(live, clean_db, pilot):
    [pid] = activated(clean_db, [user_job()])
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    assert len(bomb) < 1024 * 1024
    for headers in ({"Content-Type": "application/json"}, {"Content-Type": "application/json", "Accept": "application/json"},
                    {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"}):  # fmt: skip
        r = pilot.post(f"{live.https_url}/server/panda/getJob", data=bomb, headers=headers, timeout=60)
        out = reply(r)
        assert str(out["StatusCode"]) == "30"
        assert "exceeds" in out["errorDialog"]
    r = pilot.post(f"{live.https_url}/api/v1/pilot/acquire_jobs", data=bomb, timeout=60,
                   headers={"Content-Type": "application/json"})  # fmt: skip
    out = envelope(r, 400)
    assert out["success"] is False and "exceeds" in out["message"]
    assert job_row(clean_db, pid)[1]["jobStatus"] == "activated"
    # still healthy: the job is dispatched normally
    out = reply(pilot.post(f"{live.https_url}/server/panda/getJob", data={"siteName": SITE, "prodSourceLabel": "user"},
                           timeout=TIMEOUT))  # fmt: skip
    assert out["PandaID"] == str(pid)


def test_corrupt_gzip_is_a_clear_error(live, pilot):
    body = gzip.compress(b'{"siteName": "X"}')[:-12] + b"garbage-----"
    r = pilot.post(f"{live.https_url}/server/panda/getJob", data=body, headers={"Content-Type": "application/json"},
                   timeout=TIMEOUT)  # fmt: skip
    out = reply(r)
    assert out["StatusCode"] == "30"
    r = pilot.post(f"{live.https_url}/server/panda/getJob", data=b"{not json", timeout=TIMEOUT,
                   headers={"Content-Type": "application/json"})  # fmt: skip
    out = reply(r)
    assert out["StatusCode"] == "30" and "JSON" in out["errorDialog"]


@pytest.mark.parametrize("path", ["/server/panda/getJob", "/server/panda/submitJobs", "/api/v1/job/submit"])
def test_body_above_the_limit_is_413(live, clean_db, pilot, path):
    before = snapshot(clean_db)
    body = b"x" * (BIG + 1024)
    r = pilot.post(f"{live.https_url}{path}", data=body, timeout=60,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 413
    out = r.json()
    assert out["success"] is False and "exceeds" in out["message"]
    assert snapshot(clean_db) == before
    assert pilot.get(f"{live.https_url}/server/panda/isAlive", timeout=TIMEOUT).text == "alive=yes"


def test_body_at_the_limit_is_read(live, pilot):
    """A document field (metaData, xml, ...) may fill the whole body limit."""
    filler = "x" * (BIG - 200)
    r = pilot.post(
        f"{live.https_url}/server/panda/getJob", data={"siteName": SITE, "metaData": filler}, timeout=60
    )
    assert urlencoded(r)["StatusCode"] == "20"


def test_identity_headers_do_not_make_http_secure(live, clean_db, jobs):
    """Only the TLS peer certificate counts: headers a proxy front-end would set are ignored."""
    waiting, running = jobs
    before = snapshot(clean_db)
    spoof = {"SSL-CLIENT-S-DN": "/DC=org/DC=pandawms/OU=Robots/CN=pilot", "X-SSL-Client-DN": "/DC=org/DC=pandawms/OU=Robots/CN=pilot",
             "GRST-CRED-0": "VOMS 0 0 0 /atlas/Role=production", "Authorization": "Bearer e30.e30.x"}  # fmt: skip
    with live.session(None) as anonymous:
        for method, params in (("killJobs", {"ids": json.dumps([waiting])}),
                               ("updateJob", {"jobId": running, "state": "finished"})):  # fmt: skip
            r = anonymous.post(
                f"{live.http_url}/server/panda/{method}", data=params, headers=spoof, timeout=TIMEOUT
            )
            assert urlencoded(r)["StatusCode"] == "40"
            r = anonymous.post(
                f"{live.https_url}/server/panda/{method}", data=params, headers=spoof, timeout=TIMEOUT
            )
            # over HTTPS the (unsigned) bearer token is read, and refused: never a fallback to headers
            out = urlencoded(r)
            assert out["StatusCode"] == "70" and "bearer token refused" in out["errorDialog"], out
            no_token = {k: v for k, v in spoof.items() if k != "Authorization"}
            r = anonymous.post(
                f"{live.https_url}/server/panda/{method}", data=params, headers=no_token, timeout=TIMEOUT
            )
            assert urlencoded(r)["StatusCode"] == "40"
    assert snapshot(clean_db) == before
