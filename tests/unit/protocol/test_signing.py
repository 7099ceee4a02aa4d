"""Signed job specifications (protocol/signing.py): what the server signs, what the pilot checks.

The server signs a JobSpec; the pilot verifies the getJob reply built from it (dispatch.job_reply,
then JSON, as the pilot receives it). Every change to a signed field after signing must fail;
the fields decided per site at dispatch (endpoints, dispatch/destination blocks) may change.
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from panda_server.protocol import signing
from panda_server.protocol.dispatch import job_reply
from panda_server.protocol.jobspec import FileSpec, JobSpec
from tests.unit.protocol.test_protocol_import import _run

DN = "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
CHANGED = "signature does not match: the job specification was changed after submission"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_job(inputs=("in.a.root", "in.b.root"), **attrs) -> JobSpec:
    """A job with inputs (the first with an adler32 checksum, the others md5 only), two outputs
    and a log; the log is added between the outputs, as a submitter may (the reply puts it last)."""
    values = {"PandaID": 4242, "prodUserID": DN, "transformation": "/bin/bash",
              "jobParameters": "-c 'echo héllo \"$PANDAID\"'\n", "prodSourceLabel": "managed",
              "transferType": "direct", "computingSite": "SITE_A", "destinationSE": "SITE_A", **attrs}  # fmt: skip
    job = JobSpec(**values)
    for i, lfn in enumerate(inputs):
        sums = {"checksum": "ad:0000000" + str(i)} if i == 0 else {"md5sum": f"{i:032x}"}
        job.add_file(FileSpec(lfn=lfn, type="input", GUID="g-" + lfn, scope="test", dataset="ds",
                              dispatchDBlock="panda.dis.1", **sums))  # fmt: skip
    job.add_file(FileSpec(lfn="out.root", type="output", scope="user.jane", dataset="ds.out",
                          destinationDBlock="ds.out_sub1"))  # fmt: skip
    job.add_file(FileSpec(lfn="log.tgz", type="log", scope="test", dataset="ds.log", GUID="g-log"))
    job.add_file(FileSpec(lfn="out2.root", type="output", scope="user.jane", dataset="ds.out2"))
    return job


def received(job: JobSpec, signature: str | None) -> dict:
    """The getJob reply as the pilot has it: built by the dispatcher, through JSON."""
    return json.loads(json.dumps({"StatusCode": "0", **job_reply(job, signature=signature)}))


def test_round_trip_from_job_to_pilot_reply(key):
    job = make_job()
    sig = signing.sign_job(job, key)
    kid, _, b64 = sig.partition(":")
    assert kid == signing.key_id(key) and len(kid) == 16 and len(b64) > 300
    reply = received(job, sig)
    assert reply["jobSignature"] == sig
    assert signing.verify_reply(reply, key.public_key()) == signing.Verdict(True)


def test_the_reply_has_the_values_this_file_expects(key):
    """The wire form of make_job, which the cases below change one field at a time."""
    reply = received(make_job(), None)
    assert {k: reply[k] for k in ("inFiles", "scopeIn", "GUID", "checksum", "outFiles", "scopeOut",
                                  "realDatasets", "logFile", "scopeLog", "logGUID")} == {
        "inFiles": "in.a.root,in.b.root", "scopeIn": "test,test", "GUID": "g-in.a.root,g-in.b.root",
        "checksum": "ad:00000000,md5:00000000000000000000000000000001",
        "outFiles": "out.root,out2.root,log.tgz", "scopeOut": "user.jane,user.jane",
        "realDatasets": "ds.out,ds.out2,ds.log", "logFile": "log.tgz", "scopeLog": "test", "logGUID": "g-log",
    }  # fmt: skip


@pytest.mark.parametrize(
    "field, value",
    [
        ("transformation", "/bin/sh"),
        ("jobPars", "-c 'touch /tmp/owned'"),
        ("jobPars", "-c 'echo héllo \"$PANDAID\"'"),  # only the trailing newline removed
        ("PandaID", "4243"),
        ("prodUserID", "/DC=org/DC=pandawms/OU=Users/CN=Mallory"),
        ("prodSourceLabel", "user"),
        ("transferType", "NULL"),
        ("inFiles", "in.a.root,in.b.root,extra.root"),  # added
        ("inFiles", "in.a.root"),  # removed
        ("inFiles", "in.a.root,in.c.root"),  # renamed
        ("inFiles", "in.b.root,in.a.root"),  # swapped: GUIDs and checksums now belong to other files
        ("inFiles", ""),  # all gone
        ("scopeIn", "test,user.mallory"),  # another replica under the same LFN
        ("GUID", "g-in.a.root,g-other"),
        ("GUID", "g-in.b.root,g-in.a.root"),
        ("GUID", "g-in.a.root,g-in.b.root,g-extra"),
        ("checksum", "ad:00000000,md5:ffffffffffffffffffffffffffffffff"),
        ("checksum", "ad:00000000,NULL"),
        ("outFiles", "out.root,elsewhere.root,log.tgz"),
        ("outFiles", "out.root,log.tgz"),
        ("scopeOut", "user.jane,user.mallory"),
        ("realDatasets", "ds.out,user.mallory.ds,ds.log"),
        ("logFile", "out2.root"),  # another output taken for the log
        ("scopeLog", "user.mallory"),
        ("logGUID", "g-other"),
    ],
)
def test_changing_a_signed_field_fails(key, field, value):
    job = make_job()
    reply = received(job, signing.sign_job(job, key))
    assert reply[field] != value
    reply[field] = value
    verdict = signing.verify_reply(reply, key.public_key())
    assert not verdict.ok and not verdict.unsigned
    assert verdict.reason.startswith(CHANGED)


@pytest.mark.parametrize("field", signing.SIGNED_FIELDS)
def test_a_missing_signed_field_fails(key, field):
    job = make_job()
    reply = received(job, signing.sign_job(job, key))
    del reply[field]
    assert not signing.verify_reply(reply, key.public_key()).ok


def test_site_dependent_fields_may_differ(key):
    """What is decided where and when the job is dispatched is not signed: brokerage, the
    Setupper's dispatch and destination blocks and the site's endpoints may change after submission."""
    job = make_job()
    signature = signing.sign_job(job, key)
    job.computingSite = job.destinationSE = "SITE_B"
    job.currentPriority = 1
    for f in job.Files:
        f.dispatchDBlock, f.destinationDBlock, f.destinationSE = "dis.2", "ds_sub2", "SITE_B"
        f.status = "ready"
    reply = job_reply(job, ddm_endpoint="SITE_B_DATADISK", n_sent=7, signature=signature)
    reply = json.loads(json.dumps(reply))
    assert reply["ddmEndPointIn"] == "SITE_B_DATADISK,SITE_B_DATADISK"
    assert reply["dispatchDblock"] == "dis.2,dis.2"
    assert signing.verify_reply(reply, key.public_key()).ok
    reply.update(ddmEndPointIn="OTHER,OTHER", ddmEndPointOut="X,X,X", destinationDblock="a,b,c",
                 fileDestinationSE="S,S,S", destinationSE="S", dispatchDblock="d,d", nSent="9")  # fmt: skip
    assert signing.verify_reply(reply, key.public_key()).ok


def test_what_the_server_signs_is_what_the_pilot_reads_from_the_reply():
    """The server's fields (from the JobSpec) equal the pilot's (from the JSON reply), also with
    duplicate inputs (collapsed by the reply), md5-only or missing checksums, no log, NULLs."""
    for job in (make_job(), make_job(inputs=("b.root", "a.root", "b.root")), make_job(inputs=())):
        assert signing.fields_of_job(job) == signing.fields_of_reply(received(job, None))
    job = make_job(prodUserID=None, transferType=None)
    job.Files = [f for f in job.Files if f.type != "log"]
    job.Files[0].checksum = job.Files[0].md5sum = None
    fields = signing.fields_of_job(job)
    assert fields == signing.fields_of_reply(received(job, None))
    assert fields["checksum"] == "NULL,md5:" + "1".zfill(32)
    assert (fields["logFile"], fields["prodUserID"], fields["transferType"]) == ("NULL", "NULL", "NULL")


def test_duplicate_inputs_are_signed_as_the_reply_sends_them(key):
    signed = make_job(inputs=("b.root", "a.root", "b.root"))
    reply = received(signed, signing.sign_job(signed, key))
    assert reply["inFiles"] == "b.root,a.root"
    assert signing.verify_reply(reply, key.public_key()).ok
    reply["inFiles"], reply["GUID"] = "b.root,a.root,b.root", reply["GUID"] + ",g-b.root"
    assert not signing.verify_reply(reply, key.public_key()).ok


def test_null_and_empty_values_match_the_wire_form(key):
    job = make_job(inputs=(), prodUserID=None, transformation=None, jobParameters=None, prodSourceLabel=None)
    job.Files = []
    reply = received(job, signing.sign_job(job, key))
    assert (reply["prodUserID"], reply["transformation"], reply["jobPars"], reply["inFiles"], reply["outFiles"],
            reply["logFile"], reply["prodSourceLabel"]) == ("NULL", "NULL", "", "", "", "NULL", "NULL")  # fmt: skip
    assert signing.verify_reply(reply, key.public_key()).ok
    reply["jobPars"] = "-c true"
    assert not signing.verify_reply(reply, key.public_key()).ok


def test_another_key_is_named_by_its_id(key, other_key):
    job = make_job()
    reply = received(job, signing.sign_job(job, other_key))
    verdict = signing.verify_reply(reply, key.public_key())
    assert not verdict.ok
    assert verdict.reason == (
        f"signed by another key {signing.key_id(other_key)}, not by key {signing.key_id(key)}"
    )


def test_a_signature_made_for_another_key_id_is_not_accepted_by_relabelling(key, other_key):
    job = make_job()
    forged = signing.key_id(key) + ":" + signing.sign_job(job, other_key).split(":", 1)[1]
    assert signing.verify_reply(received(job, forged), key.public_key()).reason.startswith(CHANGED)


@pytest.mark.parametrize("signature", [None, "", "NULL", "  "])
def test_no_signature_is_reported_as_unsigned(key, signature):
    job = make_job()
    reply = received(job, signature)
    verdict = signing.verify_reply(reply, key.public_key())
    assert not verdict.ok and verdict.unsigned and verdict.reason.startswith("no signature")
    del reply["jobSignature"]
    assert signing.verify_reply(reply, key.public_key()).unsigned


@pytest.mark.parametrize(
    "text",
    ["garbage", "abc:", ":AAAA", "0123456789abcdef:not*base64!", "0123456789abcdef", "XYZ:AAAA",
     "0123456789ABCDEF:AAAA", "0123456789abcdef:AAAA:BBBB"],
)  # fmt: skip
def test_malformed_signature_text_fails_cleanly(key, text):
    verdict = signing.verify_reply(received(make_job(), text), key.public_key())
    assert not verdict.ok and not verdict.unsigned
    assert verdict.reason.startswith("malformed signature")


def test_truncated_signature_does_not_match(key):
    job = make_job()
    sig = signing.sign_job(job, key)
    verdict = signing.verify_reply(received(job, sig[:-8]), key.public_key())
    assert not verdict.ok and (verdict.reason.startswith(CHANGED) or "malformed" in verdict.reason)


def test_message_is_canonical_compact_ascii_json():
    fields = {"PandaID": "7", "prodUserID": "NULL", "prodSourceLabel": "user", "transformation": "t",
              "transferType": "NULL", "jobPars": "é x", "inFiles": "b,a", "scopeIn": "s1,s2", "GUID": "g1,g2",
              "checksum": "ad:1", "outFiles": "o,l", "scopeOut": "so", "realDatasets": "do,dl",
              "logFile": "l", "scopeLog": "sl", "logGUID": "gl"}  # fmt: skip
    assert signing.VERSION == "pandawms-jobsig-2"
    assert json.loads(signing.message(fields)) == {
        "version": "pandawms-jobsig-2", "PandaID": "7", "prodUserID": "NULL", "prodSourceLabel": "user",
        "transformation": "t", "transferType": "NULL", "jobParameters": "é x",
        "inputs": [["b", "s1", "g1", "ad:1"], ["a", "s2", "g2", None]],  # in reply order, padded
        "outputs": [["o", "so", "do"], ["l", "sl", "dl"]], "log": ["l", "sl", "gl"],
    }  # fmt: skip
    text = signing.message(fields).decode("ascii")
    assert text.startswith('{"PandaID":"7","inputs":[["b","s1","g1","ad:1"],["a","s2","g2",null]],')
    assert '"jobParameters":"\\u00e9 x"' in text and " " not in text.replace("\\u00e9 x", "")


def test_a_signature_of_the_previous_version_is_unsupported(key):
    """Jobs signed by a server before pandawms-jobsig-2 are refused, saying why."""
    job = make_job()
    reply = received(job, None)
    fields = signing.fields_of_reply(reply)
    old = key.sign(signing._message_v1(fields), signing._PSS, signing.hashes.SHA256())
    reply["jobSignature"] = f"{signing.key_id(key)}:{base64.b64encode(old).decode()}"
    verdict = signing.verify_reply(reply, key.public_key())
    assert not verdict.ok and not verdict.unsigned
    assert verdict.reason.startswith("unsupported signature version pandawms-jobsig-1:")
    reply["jobPars"] = "-c true"  # an old signature of a changed job is just changed
    assert signing.verify_reply(reply, key.public_key()).reason.startswith(CHANGED)


def test_keys_load_from_the_pki_files(tmp_path, key):
    from panda_server.pki import ensure_keypair

    priv, pub = tmp_path / "private" / "k.pem", tmp_path / "pub.pem"
    priv.parent.mkdir()
    ensure_keypair(priv, pub)
    private = signing.load_private_key(priv)
    public = signing.load_public_key(pub.read_bytes(), str(pub))
    assert signing.key_id(private) == signing.key_id(public)
    job = make_job()
    assert signing.verify_reply(received(job, signing.sign_job(job, private)), public).ok


def test_unusable_keys_give_clear_errors(tmp_path, key):
    with pytest.raises(signing.SigningKeyError, match="cannot read the job-signing key"):
        signing.load_private_key(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(signing.SigningKeyError, match="not an unencrypted PEM private key"):
        signing.load_private_key(tmp_path / "junk.pem")
    with pytest.raises(
        signing.SigningKeyError, match="https://x/cache/jobsign-pub.pem is not a PEM public key"
    ):
        signing.load_public_key(b"<html>404</html>", "https://x/cache/jobsign-pub.pem")
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    with pytest.raises(signing.SigningKeyError, match="not an RSA public key"):
        signing.load_public_key(ec_pub, "ec.pem")


def test_signing_imports_without_server_dependencies():
    proc = _run("import panda_server.protocol.signing\nprint('ok')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_digests_name_each_signed_field_without_its_value():
    fields = signing.fields_of_reply(received(make_job(), None))
    text = signing.digests(fields)
    assert text.startswith("PandaID=4242 prodUserID:sha256=")
    assert "jobPars:sha256=" in text and "GUID:sha256=" in text and "logGUID:sha256=" in text
    assert "echo" not in text and "g-in" not in text
    assert [w.split(":")[0] for w in text.split()[1:]] == list(signing.SIGNED_FIELDS[1:])
    changed = {**fields, "jobPars": "-c true", "scopeIn": "test,evil"}
    differ = [a for a, b in zip(text.split(), signing.digests(changed).split(), strict=True) if a != b]
    assert [d.split(":")[0] for d in differ] == ["jobPars", "scopeIn"]
