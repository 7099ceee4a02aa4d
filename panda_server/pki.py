"""Grid-style certificates with `cryptography`: a CA, host/user certificates, RFC 3820 proxies,
the X509_USER_PROXY file layout and the hashed CA directory OpenSSL and curl expect.

Classic PanDA authenticates every HTTPS caller by its grid certificate or proxy; this module mints
an equivalent self-contained PKI so that the server, clients and pilots can run over real mutual
TLS without a grid. `panda-ca init` is idempotent and cheap, so `make run` calls it every time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

DEFAULT_CA_DN = "/DC=org/DC=pandawms/CN=PanDA-WMS Local CA"
DEFAULT_USER_DN = "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
DEFAULT_PILOT_DN = "/DC=org/DC=pandawms/OU=Robots/CN=pilot"
HOST_DN_PREFIX = "/DC=org/DC=pandawms/OU=Hosts/CN="

PROXY_CERT_INFO_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.14")
POLICY_INHERIT_ALL = "1.3.6.1.5.5.7.21.1"
POLICY_LIMITED = "1.3.6.1.4.1.3536.1.1.1.9"  # Globus "limited proxy" policy language
# DER of ProxyCertInfo ::= SEQ { proxyPolicy SEQ { policyLanguage OID } }, no path length limit
_PCI_DER = {
    POLICY_INHERIT_ALL: bytes.fromhex("300c300a06082b06010505071501"),
    POLICY_LIMITED: bytes.fromhex("300f300d060b2b060104019b5001010109"),
}

CA_DAYS = 3650
# Anything expiring sooner than this is re-minted by create_pki
RENEW_MARGIN = dt.timedelta(hours=1)
# Back-date notBefore so that small clock skews between hosts do not reject fresh credentials
CLOCK_SKEW = dt.timedelta(minutes=5)

_DN_KEYS = {
    "DC": NameOID.DOMAIN_COMPONENT,
    "C": NameOID.COUNTRY_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "CN": NameOID.COMMON_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
}
_DN_LOOKUP = {k.lower(): v for k, v in _DN_KEYS.items()} | {"e": NameOID.EMAIL_ADDRESS}
_DN_SHORT = {v: k for k, v in _DN_KEYS.items()}
_PEM_KEY_RE = re.compile(rb"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.+?-----END \1-----\s*", re.S)
_HASH_NAME_RE = re.compile(r"[0-9a-f]{8}\.\d+")


class CAError(Exception):
    """A PKI operation failed for a reason worth a one-line message (no traceback)."""


@dataclass(frozen=True)
class Credential:
    """A certificate, its private key and the certificates between it and the CA (nearest first)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()


def dn_to_name(dn: str) -> x509.Name:
    """Parse an OpenSSL one-line DN ("/DC=org/OU=Users/CN=Jane Doe") keeping its order."""
    if not dn.startswith("/"):
        raise ValueError(f"DN must start with '/', as in /DC=org/CN=name: {dn!r}")
    attrs: list[tuple[x509.ObjectIdentifier, str]] = []
    for part in dn[1:].split("/"):
        if "=" not in part:
            # Grid host DNs like /CN=host/pandaserver.cern.ch put a slash inside the value
            if not attrs or not part:
                raise ValueError(f"malformed DN component {part!r} in {dn!r}")
            attrs[-1] = (attrs[-1][0], attrs[-1][1] + "/" + part)
            continue
        key, value = part.split("=", 1)
        oid = _DN_LOOKUP.get(key.strip().lower())
        if oid is None:
            raise ValueError(f"unknown DN attribute {key!r} in {dn!r} (known: {', '.join(_DN_KEYS)})")
        if not value:
            raise ValueError(f"empty value for {key} in {dn!r}")
        attrs.append((oid, value))
    # One attribute per RDN so the DER order is exactly the written order
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(o, v)]) for o, v in attrs])


def name_to_dn(name: x509.Name) -> str:
    """Render an x509.Name in the OpenSSL one-line form PanDA uses for DNs."""
    return "".join(f"/{_DN_SHORT.get(a.oid, a.oid.dotted_string)}={a.value}" for a in name)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_usage(*, sign: bool = False, encipher: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    # Positional order: digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment,
    # keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly
    return x509.KeyUsage(sign, False, encipher, False, False, cert_sign, cert_sign, False, False)


def _builder(
    subject: x509.Name, key: PrivateKey, life: dt.timedelta, signer: x509.Certificate | None, serial: int = 0
) -> x509.CertificateBuilder:
    """Common fields; self-signed if signer is None, else notAfter capped at the signer's (never outlive it)."""
    now = utcnow()
    end = now + life if signer is None else min(now + life, signer.not_valid_after_utc)
    return x509.CertificateBuilder(
        subject_name=subject,
        issuer_name=subject if signer is None else signer.subject,
        public_key=key.public_key(),
        serial_number=serial or x509.random_serial_number(),
        not_valid_before=now - CLOCK_SKEW,
        not_valid_after=end,
    )


def general_name(entry: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(entry))
    except ValueError:
        return x509.DNSName(entry)


class Authority:
    """A certification authority: its self-signed certificate and key."""

    def __init__(self, cert: x509.Certificate, key: PrivateKey) -> None:
        self.cert = cert
        self.key = key

    @classmethod
    def create(cls, subject_dn: str, days: int = 365) -> Authority:
        """Mint a new self-signed CA."""
        key = _new_key()
        cert = (
            _builder(dn_to_name(subject_dn), key, dt.timedelta(days=days), None)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(self, subject_dn: str, *, kind: str, sans: Sequence[str] = (), days: int = 365) -> Credential:
        """Issue an end-entity credential; kind "host" (server+client auth) or "user" (client auth)."""
        ekus = {
            "host": [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            "user": [ExtendedKeyUsageOID.CLIENT_AUTH],
        }
        if kind not in ekus:
            raise ValueError(f"unknown certificate kind {kind!r} (host or user)")
        key = _new_key()
        builder = (
            _builder(dn_to_name(subject_dn), key, dt.timedelta(days=days), self.cert)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(sign=True, encipher=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage(ekus[kind]), critical=False)
            # voms-proxy-fake refuses certificates without SKI (it builds AKI keyid:always from it)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([general_name(n) for n in sans]), critical=False
            )
        return Credential(builder.sign(self.key, hashes.SHA256()), key)


def make_proxy(
    owner: Credential,
    *,
    hours: float = 12,
    limited: bool = False,
    extensions: Sequence[x509.ExtensionType] = (),
) -> Credential:
    """Sign an RFC 3820 proxy with the owner's key (owner may itself be a proxy); `extensions` are
    added non-critical (the VOMS AC extension, see pki_voms.py)."""
    if hours <= 0:
        raise ValueError("proxy lifetime must be positive")
    key = _new_key()
    # RFC 3820 makes the subject unique by appending CN=<serial>; >>96 keeps it a readable 63-bit number
    serial = x509.random_serial_number() >> 96
    cn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
    subject = x509.Name([*owner.cert.subject.rdns, cn])
    policy = POLICY_LIMITED if limited else POLICY_INHERIT_ALL
    builder = (
        _builder(subject, key, dt.timedelta(hours=hours), owner.cert, serial)
        .add_extension(_key_usage(sign=True, encipher=True), critical=True)
        .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, _PCI_DER[policy]), critical=True)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    cert = builder.sign(owner.key, hashes.SHA256())
    return Credential(cert, key, (owner.cert, *owner.chain))


def proxy_policy(cert: x509.Certificate) -> str | None:
    """The proxy policy language OID of an RFC 3820 proxy, or None if cert is not a proxy."""
    try:
        ext = cert.extensions.get_extension_for_oid(PROXY_CERT_INFO_OID)
    except x509.ExtensionNotFound:
        return None
    seq, _ = der_decoder.decode(ext.value.value)
    return str(seq[len(seq) - 1][0])  # proxyPolicy is last; pCPathLenConstraint may precede it


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace path, so readers (the server, pilots) never see half a key."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write_credential(cred: Credential, cert_path: Path, key_path: Path) -> None:
    """Write cert (plus chain) PEM, 0644, and the unencrypted PKCS#8 key PEM, 0600."""
    write_file(Path(key_path), key_pem(cred.key, serialization.PrivateFormat.PKCS8), 0o600)
    write_file(Path(cert_path), b"".join(cert_pem(c) for c in (cred.cert, *cred.chain)), 0o644)


def write_proxy_file(cred: Credential, path: Path) -> None:
    """Write the X509_USER_PROXY layout: proxy cert, its key, then the chain; mode 0600."""
    # Globus-era tools expect "BEGIN RSA PRIVATE KEY" in proxy files, as voms-proxy-init writes it
    fmt = serialization.PrivateFormat.PKCS8
    if isinstance(cred.key, rsa.RSAPrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    data = cert_pem(cred.cert) + key_pem(cred.key, fmt) + b"".join(cert_pem(c) for c in cred.chain)
    write_file(Path(path), data, 0o600)


def ensure_keypair(key_path: Path, pub_path: Path) -> rsa.RSAPrivateKey:
    """An RSA signing key pair (job specifications, tokens): reused if both files match, else new.

    The private key is PKCS#8 PEM, 0600; the public key SubjectPublicKeyInfo PEM, 0644.
    """
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        pub = serialization.load_pem_public_key(Path(pub_path).read_bytes())
        if isinstance(key, rsa.RSAPrivateKey) and key.public_key() == pub:
            return key
    except (OSError, ValueError, TypeError):
        pass  # missing or unreadable: mint anew
    key = _new_key()
    write_file(Path(key_path), key_pem(key, serialization.PrivateFormat.PKCS8), 0o600)
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    write_file(Path(pub_path), pub_pem, 0o644)
    return key


def openssl_subject_hash(cert: x509.Certificate) -> str:
    """The subject hash OpenSSL uses to find CA files in a capath directory."""
    try:
        proc = subprocess.run(
            ["openssl", "x509", "-hash", "-noout"], input=cert_pem(cert), capture_output=True, timeout=30
        )
    except FileNotFoundError as exc:
        raise CAError("openssl not found on PATH (needed for the CA subject hash)") from exc
    if proc.returncode != 0:
        raise CAError(f"openssl x509 -hash failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode().strip()


def write_hashed_ca_dir(ca_certs: Sequence[x509.Certificate], directory: Path) -> None:
    """Write a capath directory: <hash>.N per CA plus ca.pem with them all; stale hash files go."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    unique = list({c.fingerprint(hashes.SHA256()): c for c in ca_certs}.values())
    wanted: dict[str, bytes] = {}
    for cert in unique:
        digest = openssl_subject_hash(cert)
        n = 0
        while f"{digest}.{n}" in wanted:  # distinct CAs may share a subject hash
            n += 1
        wanted[f"{digest}.{n}"] = cert_pem(cert)
    for old in directory.iterdir():
        # A replaced CA must stop being trusted, so hash files we did not just write are removed
        if _HASH_NAME_RE.fullmatch(old.name) and old.name not in wanted:
            old.unlink()
    for name, pem in wanted.items():
        write_file(directory / name, pem, 0o644)
    write_file(directory / "ca.pem", b"".join(cert_pem(c) for c in unique), 0o644)


def load_certs(path: Path) -> list[x509.Certificate]:
    """All certificates in a PEM file, skipping any private key block (proxy files have one)."""
    data = _PEM_KEY_RE.sub(b"", Path(path).read_bytes())
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CAError(f"no PEM certificate in {path}")
    return x509.load_pem_x509_certificates(data)


def load_credential(cert_path: Path, key_path: Path | None = None) -> Credential:
    """Load leaf + chain from cert_path and the key from key_path (default: cert_path, as in proxies)."""
    certs = load_certs(cert_path)
    match = _PEM_KEY_RE.search(Path(key_path or cert_path).read_bytes())
    if match is None:
        raise CAError(f"no PEM private key in {key_path or cert_path}")
    try:
        key = serialization.load_pem_private_key(match.group(0), password=None)
    except TypeError as exc:  # cryptography's way of saying "encrypted, no password given"
        raise CAError(f"encrypted private keys are not supported: {key_path or cert_path}") from exc
    if key.public_key() != certs[0].public_key():
        raise CAError(f"private key does not match the certificate in {cert_path}")
    return Credential(certs[0], key, tuple(certs[1:]))  # type: ignore[arg-type]
