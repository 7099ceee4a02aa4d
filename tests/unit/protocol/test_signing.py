"""Signed job specifications (protocol/signing.py): what the server signs, what the pilot checks.

The server signs a JobSpec; the pilot verifies the getJob reply built from it (dispatch.job_reply,
then JSON, as the pilot receives it). Every change to a signed field after signing must fail.
"""

from __future__ import annotations

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
    values = {"PandaID": 4242, "prodUserID": DN, "transformation": "/bin/bash",
              "jobParameters": "-c 'echo héllo \"$PANDAID\"'\n", "prodSourceLabel": "managed", **attrs}  # fmt: skip
    job = JobSpec(**values)
    for lfn in inputs:
        job.add_file(FileSpec(lfn=lfn, type="input", GUID="g-" + lfn, scope="test", dataset="ds"))
    job.add_file(FileSpec(lfn="out.root", type="output", scope="test", dataset="ds.out"))
    job.add_file(FileSpec(lfn="log.tgz", type="log", scope="test", dataset="ds.log"))
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


@pytest.mark.parametrize(
    "field, value",
    [
        ("transformation", "/bin/sh"),
        ("jobPars", "-c 'touch /tmp/owned'"),
        ("jobPars", "-c 'echo héllo \"$PANDAID\"'"),  # only the trailing newline removed
        ("PandaID", "4243"),
        ("prodUserID", "/DC=org/DC=pandawms/OU=Users/CN=Mallory"),
        ("inFiles", "in.a.root,in.b.root,extra.root"),  # added
        ("inFiles", "in.a.root"),  # removed
        ("inFiles", "in.a.root,in.c.root"),  # renamed
        ("inFiles", ""),  # all gone
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


def test_unsigned_fields_may_differ(key):
    """Only the signed fields count: the dispatcher's own fields (nSent, endpoints, …) do not."""
    job = make_job()
    reply = received(job, signing.sign_job(job, key))
    reply.update(nSent="7", ddmEndPointIn="OTHER,OTHER", currentPriority="1", outFiles="x,y")
    assert signing.verify_reply(reply, key.public_key()).ok


def test_order_and_duplicates_of_input_files_do_not_matter(key):
    signed = make_job(inputs=("b.root", "a.root", "b.root"))
    reply = received(make_job(inputs=("a.root", "b.root")), signing.sign_job(signed, key))
    assert reply["inFiles"] == "a.root,b.root"
    assert signing.verify_reply(reply, key.public_key()).ok
    reply["inFiles"] = "b.root,a.root,a.root"
    assert signing.verify_reply(reply, key.public_key()).ok


def test_null_and_empty_values_match_the_wire_form(key):
    job = make_job(inputs=(), prodUserID=None, transformation=None, jobParameters=None)
    reply = received(job, signing.sign_job(job, key))
    assert (reply["prodUserID"], reply["transformation"], reply["jobPars"], reply["inFiles"]) == (
        "NULL", "NULL", "", "")  # fmt: skip
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
    fields = {"PandaID": "7", "prodUserID": "NULL", "transformation": "t", "jobPars": "é x",
              "inFiles": "b,a,b,NULL,"}  # fmt: skip
    text = signing.message(fields).decode("ascii")
    assert text == (
        '{"PandaID":"7","inputLFNs":["a","b"],"jobParameters":"\\u00e9 x","prodUserID":"NULL",'
        f'"transformation":"t","version":"{signing.VERSION}"}}'
    )


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
    assert "jobPars:sha256=" in text and "inFiles:sha256=" in text and "echo" not in text
    changed = {**fields, "jobPars": "-c true"}
    differ = [a for a, b in zip(text.split(), signing.digests(changed).split(), strict=True) if a != b]
    assert [d.split(":")[0] for d in differ] == ["jobPars"]
