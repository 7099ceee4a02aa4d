"""The request/reply codec: bodies in every encoding pilots use, caps, and replies."""

from __future__ import annotations

import gzip
import json
import urllib.parse

import pytest

from panda_server.protocol import wire
from panda_server.protocol.dispatch import eligible_labels, job_reply
from panda_server.protocol.identity import bare_dn, dn_from_peercert, user_name
from panda_server.protocol.jobspec import FileSpec, JobSpec


def test_form_body():
    assert wire.decode_body(b"siteName=X&mem=2000&workingGroup=", "application/x-www-form-urlencoded") == {
        "siteName": "X", "mem": "2000", "workingGroup": ""}  # fmt: skip


def test_gzip_json_without_content_encoding_and_booleans():
    body = gzip.compress(
        json.dumps({"siteName": "X", "allowOtherCountry": False, "diskSpace": 20000}).encode()
    )
    got = wire.decode_body(body, "application/json")
    assert got == {"siteName": "X", "allowOtherCountry": "False", "diskSpace": 20000}


def test_gzip_bomb_is_refused_without_inflating_it():
    bomb = gzip.compress(b"0" * (20 * 1024 * 1024))
    with pytest.raises(wire.BodyError, match="exceeds"):
        wire.decode_body(bomb, "application/json", limit=1024 * 1024)


@pytest.mark.parametrize("body", [b"[1,2]", b"{bad", b"\x1f\x8bnot gzip"])
def test_bad_json_bodies(body):
    with pytest.raises(wire.BodyError):
        wire.decode_body(body, "application/json")


def test_reply_urlencoded_unless_json_accepted():
    body, ctype = wire.encode_reply({"StatusCode": 0, "command": None}, as_json=False)
    assert ctype == "text/plain" and urllib.parse.parse_qs(body) == {"StatusCode": ["0"], "command": ["NULL"]}
    body, ctype = wire.encode_reply({"StatusCode": 20, "errorDialog": "no jobs in PanDA"}, as_json=True)
    assert ctype == "application/json" and json.loads(body) == {
        "StatusCode": 20,
        "errorDialog": "no jobs in PanDA",
    }
    assert wire.accepts_json("text/html, application/json") and not wire.accepts_json(None)


def test_dn_normalisation():
    subject = ((("domainComponent", "org"),), (("domainComponent", "pandawms"),), (("commonName", "Jane Doe"),),
               (("commonName", "123456"),), (("commonName", "proxy"),))  # fmt: skip
    dn = dn_from_peercert(subject)
    assert dn == "/DC=org/DC=pandawms/CN=Jane Doe/CN=123456/CN=proxy"
    assert bare_dn(dn) == "/DC=org/DC=pandawms/CN=Jane Doe"
    assert bare_dn("/DC=org/CN=Jane Doe/CN=limited proxy") == "/DC=org/CN=Jane Doe"
    assert user_name("/DC=org/OU=Users/CN=Jane Doe 12/CN=98765") == "Jane Doe"


def test_label_mapping():
    assert eligible_labels(None) == ("managed", "test", "prod_test", "install")
    assert eligible_labels("user") == ("user", "panda", "install")
    assert eligible_labels("managed", queue_status="test") == ("test", "prod_test", "install")
    assert eligible_labels("ptest") == ("ptest",)


def test_job_reply_aligns_lists_and_separates_the_log():
    job = JobSpec(PandaID=1001, jobParameters="a b", prodSourceLabel="managed", attemptNr=1)
    for lfn, guid in (("in1", "g1"), ("in2", "g2"), ("in1", "g1")):
        job.add_file(
            FileSpec(lfn=lfn, GUID=guid, type="input", fsize=10, checksum="ad:01", scope="s1", dataset="ds")
        )
    job.add_file(
        FileSpec(lfn="out1", type="output", scope="so", dataset="dso", destinationDBlock="dso_sub01")
    )
    job.add_file(
        FileSpec(lfn="log1", type="log", scope="sl", dataset="dsl", GUID="lg", destinationDBlock="dsl")
    )
    r = job_reply(job, ddm_endpoint="SE_DATADISK")
    assert r["inFiles"] == "in1,in2" and r["GUID"] == "g1,g2" and r["fsize"] == "10,10"
    assert r["outFiles"] == "out1,log1" and r["scopeOut"] == "so" and r["scopeLog"] == "sl"
    assert r["realDatasets"] == "dso,dsl" and r["ddmEndPointOut"] == "SE_DATADISK,SE_DATADISK"
    assert r["logFile"] == "log1" and r["logGUID"] == "lg" and r["jobPars"] == "a b"
    assert r["swRelease"] == "NULL" and r["coreCount"] == "1"
    assert all(isinstance(v, str) for v in r.values())
