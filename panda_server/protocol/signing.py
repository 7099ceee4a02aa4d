"""Signed job specifications: what the server signs at submission and the pilot verifies.

The server signs, with its job-signing key (`<pki>/private/jobsign-key.pem`), every part of a
job that decides what runs on a worker node, what it reads and where its results go:

- PandaID, prodUserID, prodSourceLabel, transformation, transferType, the job parameters;
- each input, position-aligned as in the getJob reply (de-duplicated by LFN there): its LFN,
  scope, GUID and checksum (inFiles, scopeIn, GUID, checksum) — another replica under the same
  LFN does not verify;
- each output, the log included, in outFiles order: its LFN, scope and dataset (outFiles,
  scopeOut then scopeLog, realDatasets); and the log file itself (logFile, scopeLog, logGUID).

Not signed, because they depend on where the job is dispatched and are decided after
submission: the storage endpoints (ddmEndPointIn/Out), the dispatch and destination blocks,
destinationSE/fileDestinationSE and computingSite. Server code that changes a signed field after
submission must re-sign the job (taskbuffer/store.job_signature) in the same transaction.

The signature is stored with the job (jobparamstable.jobSignature) and sent in the getJob reply
as `jobSignature`; the pilot recomputes the message from the reply and verifies it with the
server's public key (`jobsign-pub.pem`, also served at `/cache/jobsign-pub.pem`). Both sides
build the message from the wire strings of SIGNED_FIELDS: the server from the reply that
dispatch.job_reply makes of the stored JobSpec, the pilot from the reply it received, so they
compute it identically. Signature text: "<keyid>:<base64 RSA-PSS/SHA-256 signature>", keyid
being the first 16 hex digits of the SHA-256 of the public key's DER SubjectPublicKeyInfo, so a
job signed by another (e.g. rotated) key is diagnosed as such. Only cryptography ≤ 38 APIs are
used: the pilot host's system Python may be that old.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from panda_server.protocol.dispatch import job_reply
from panda_server.protocol.jobspec import JobSpec

VERSION = "pandawms-jobsig-2"  # changes whenever the signed content or its encoding changes
OLD_VERSIONS = ("pandawms-jobsig-1",)  # recognised only to say that they are no longer accepted
FIELD = "jobSignature"  # getJob reply field, and the jobparamstable column
SIGNED_FIELDS = (
    "PandaID", "prodUserID", "prodSourceLabel", "transformation", "transferType", "jobPars",
    "inFiles", "scopeIn", "GUID", "checksum",
    "outFiles", "scopeOut", "realDatasets", "logFile", "scopeLog", "logGUID",
)  # fmt: skip
KEY_ID_LENGTH = 16  # hex digits
_NULL = "NULL"
_HEX = frozenset("0123456789abcdef")
_CHANGED = ("signature does not match: the job specification was changed after submission "
            "(owner, label, transformation, parameters, transfer type, input or output files)")  # fmt: skip
_OLD_VERSION = (f"unsupported signature version {OLD_VERSIONS[0]}: the job was signed by a server older "
                f"than this pilot, which verifies {VERSION} (kill and resubmit the job)")  # fmt: skip
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
    """The signed fields of a job: those of the getJob reply dispatch.job_reply makes of it."""
    return fields_of_reply(job_reply(job))


def fields_of_reply(reply: Mapping[str, Any]) -> dict[str, str]:
    """The signed fields of a getJob reply (a missing field counts as "NULL", jobPars as "")."""
    out = {name: _NULL if reply.get(name) is None else str(reply[name]) for name in SIGNED_FIELDS}
    if reply.get("jobPars") is None:
        out["jobPars"] = ""
    return out


def _entries(text: str) -> list[str]:
    """The entries of a comma-joined wire list, exactly ("" is the empty list)."""
    return text.split(",") if text else []


def _aligned(*columns: list[str]) -> list[list[str | None]]:
    """Rows of position-aligned columns; a short column is padded with null, so that an entry
    added to or removed from any one column changes the message."""
    return [list(row) for row in itertools.zip_longest(*columns)]


def message(fields: Mapping[str, str]) -> bytes:
    """The exact bytes that are signed: compact, key-sorted, ASCII-only JSON.

    inputs: [lfn, scope, GUID, checksum] per inFiles entry; outputs: [lfn, scope, dataset] per
    outFiles entry, the scopes being scopeOut's and then, when there is a log, scopeLog (the log
    is last in outFiles); log: [logFile, scopeLog, logGUID]. Every list value is signed exactly
    as it came (no sorting, no de-duplication, no stripping).
    """
    has_log = fields["logFile"] != _NULL
    out_scopes = _entries(fields["scopeOut"]) + ([fields["scopeLog"]] if has_log else [])
    doc = {
        "version": VERSION,
        "PandaID": fields["PandaID"],
        "prodUserID": fields["prodUserID"],
        "prodSourceLabel": fields["prodSourceLabel"],
        "transformation": fields["transformation"],
        "transferType": fields["transferType"],
        "jobParameters": fields["jobPars"],
        "inputs": _aligned(*(_entries(fields[k]) for k in ("inFiles", "scopeIn", "GUID", "checksum"))),
        "outputs": _aligned(_entries(fields["outFiles"]), out_scopes, _entries(fields["realDatasets"])),
        "log": [fields["logFile"], fields["scopeLog"], fields["logGUID"]],
    }
    return _encode(doc)


def _message_v1(fields: Mapping[str, str]) -> bytes:
    """pandawms-jobsig-1 (PandaID, owner, transformation, parameters, sorted input LFNs): only to
    tell a job signed by an older server from a changed one."""
    lfns = sorted({lfn for lfn in _entries(fields["inFiles"]) if lfn not in ("", _NULL)})
    doc = {name: fields[name] for name in ("PandaID", "prodUserID", "transformation")}
    return _encode({**doc, "version": OLD_VERSIONS[0], "jobParameters": fields["jobPars"], "inputLFNs": lfns})


def _encode(doc: Mapping[str, Any]) -> bytes:
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
    if _valid(key, raw, message(fields)):
        return Verdict(True)
    if _valid(key, raw, _message_v1(fields)):
        return Verdict(False, _OLD_VERSION)
    return Verdict(False, _CHANGED)


def _valid(key: rsa.RSAPublicKey, raw: bytes, data: bytes) -> bool:
    try:
        key.verify(raw, data, _PSS, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify_reply(reply: Mapping[str, Any], key: rsa.RSAPublicKey) -> Verdict:
    """Verify a getJob reply's jobSignature against its own fields."""
    return verify(fields_of_reply(reply), reply.get(FIELD), key)


def digests(fields: Mapping[str, str]) -> str:
    """Short SHA-256 digests of the signed values as one side sees them. The pilot logs them for
    a job it refuses: compared with the same digests of the job in the database, they show which
    field was changed on the way (the signed values themselves cannot be recovered)."""
    shown = (f"{name}:sha256={_short(fields[name])}" for name in SIGNED_FIELDS if name != "PandaID")
    return f"PandaID={fields['PandaID']} " + " ".join(shown)


def _short(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
