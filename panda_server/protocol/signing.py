"""Signed job specifications: what the server signs at submission and the pilot verifies.

The server signs, with its job-signing key (`<pki>/private/jobsign-key.pem`), the part of a job
that decides what runs on a worker node: PandaID, prodUserID, transformation, the job
parameters (exact text) and the sorted, de-duplicated input LFNs. The signature is stored with
the job (jobparamstable.jobSignature) and sent in the getJob reply as `jobSignature`; the pilot
recomputes the same message from the reply fields PandaID, prodUserID, transformation, jobPars
and inFiles and verifies it with the server's public key (`jobsign-pub.pem`, also served at
`/cache/jobsign-pub.pem`). A job changed in the database after submission no longer verifies.

Both sides build the message from the values as they appear on the wire (dispatch.job_reply:
None → "NULL", jobPars "" when unset, inFiles comma-joined), so the server and the pilot compute
it identically. Signature text: "<keyid>:<base64 RSA-PSS/SHA-256 signature>", keyid being the
first 16 hex digits of the SHA-256 of the public key's DER SubjectPublicKeyInfo, so a job
signed by another (e.g. rotated) key is diagnosed as such. Only cryptography ≤ 38 APIs are used:
the pilot host's system Python may be that old.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from panda_server.protocol.jobspec import JobSpec, comma_join, wire_value

VERSION = "pandawms-jobsig-1"  # changes whenever the signed content or its encoding changes
FIELD = "jobSignature"  # getJob reply field, and the jobparamstable column
SIGNED_FIELDS = ("PandaID", "prodUserID", "transformation", "jobPars", "inFiles")
KEY_ID_LENGTH = 16  # hex digits
_NULL = "NULL"
_HEX = frozenset("0123456789abcdef")
_CHANGED = ("signature does not match: the job specification was changed after submission "
            "(PandaID, prodUserID, transformation, jobPars or inFiles)")  # fmt: skip
PrivateKey = rsa.RSAPrivateKey
PublicKey = rsa.RSAPublicKey
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


class SigningKeyError(ValueError):
    """A signing or verification key that cannot be used (missing, unreadable, not RSA)."""


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of a verification: ok, or why not (unsigned: there was no signature at all)."""

    ok: bool
    reason: str = ""
    unsigned: bool = False


# --- the message ------------------------------------------------------------------------------


def fields_of_job(job: JobSpec) -> dict[str, str]:
    """The signed fields of a stored job, as dispatch.job_reply puts them on the wire."""
    return {
        "PandaID": wire_value(job.PandaID),
        "prodUserID": wire_value(job.prodUserID),
        "transformation": wire_value(job.transformation),
        "jobPars": job.jobParameters if job.jobParameters is not None else "",
        "inFiles": comma_join(f.lfn for f in job.files_of_type("input")),
    }


def fields_of_reply(reply: Mapping[str, Any]) -> dict[str, str]:
    """The signed fields of a getJob reply (a missing field counts as "NULL", jobPars as "")."""
    out = {name: _NULL if reply.get(name) is None else str(reply[name]) for name in SIGNED_FIELDS}
    if reply.get("jobPars") is None:
        out["jobPars"] = ""
    return out


def input_lfns(in_files: str) -> list[str]:
    """inFiles → the signed LFN list: sorted, without duplicates and without empty/NULL entries."""
    if in_files in ("", _NULL):
        return []
    return sorted({lfn for lfn in in_files.split(",") if lfn not in ("", _NULL)})


def message(fields: Mapping[str, str]) -> bytes:
    """The exact bytes that are signed: compact, key-sorted, ASCII-only JSON."""
    doc = {
        "version": VERSION,
        "PandaID": fields["PandaID"],
        "prodUserID": fields["prodUserID"],
        "transformation": fields["transformation"],
        "jobParameters": fields["jobPars"],
        "inputLFNs": input_lfns(fields["inFiles"]),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# --- keys -------------------------------------------------------------------------------------


def key_id(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """Short fingerprint of a key pair: SHA-256 of the public key's DER, first 16 hex digits."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:KEY_ID_LENGTH]


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read the job-signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise SigningKeyError(f"{path} is not an RSA key")
    return key


def load_public_key(data: bytes, source: str) -> rsa.RSAPublicKey:
    """A PEM public key (SubjectPublicKeyInfo) from a file's or a download's bytes."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{source} is not a PEM public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SigningKeyError(f"{source} is not an RSA public key")
    return key


# --- sign and verify --------------------------------------------------------------------------


def sign(fields: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
    raw = key.sign(message(fields), _PSS, hashes.SHA256())
    return f"{key_id(key)}:{base64.b64encode(raw).decode('ascii')}"


def sign_job(job: JobSpec, key: rsa.RSAPrivateKey) -> str:
    """The signature stored with a job (after $PANDAID substitution: the job as it will run)."""
    return sign(fields_of_job(job), key)


def verify(fields: Mapping[str, str], signature: str | None, key: rsa.RSAPublicKey) -> Verdict:
    if signature is None or str(signature).strip() in ("", _NULL):
        return Verdict(False, "no signature: the job came without jobSignature", unsigned=True)
    kid, sep, encoded = str(signature).strip().partition(":")
    try:
        well_formed = sep and encoded and len(kid) == KEY_ID_LENGTH and all(c in _HEX for c in kid)
        raw = base64.b64decode(encoded, validate=True) if well_formed else b""
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        shown = str(signature)[:40]
        return Verdict(False, f"malformed signature {shown!r}: expected '<keyid>:<base64>'")
    mine = key_id(key)
    if kid != mine:
        return Verdict(False, f"signed by another key {kid}, not by key {mine}")
    try:
        key.verify(raw, message(fields), _PSS, hashes.SHA256())
    except InvalidSignature:
        return Verdict(False, _CHANGED)
    return Verdict(True)


def verify_reply(reply: Mapping[str, Any], key: rsa.RSAPublicKey) -> Verdict:
    """Verify a getJob reply's jobSignature against its own fields."""
    return verify(fields_of_reply(reply), reply.get(FIELD), key)


def digests(fields: Mapping[str, str]) -> str:
    """Short SHA-256 digests of the signed values as one side sees them. The pilot logs them for
    a job it refuses: compared with the same digests of the job in the database, they show which
    field was changed on the way (the signed values themselves cannot be recovered)."""
    values = {name: fields[name] for name in ("prodUserID", "transformation", "jobPars")}
    values["inFiles"] = ",".join(input_lfns(fields["inFiles"]))
    return f"PandaID={fields['PandaID']} " + " ".join(f"{k}:sha256={_short(v)}" for k, v in values.items())


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
