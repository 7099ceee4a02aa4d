"""Local grid-style PKI for PanDA-WMS: a CA, host/user/pilot certificates and RFC 3820 proxies.

Classic PanDA authenticates every HTTPS caller by its grid certificate or proxy; this module mints
an equivalent self-contained PKI so that the server, clients and pilots can run over real mutual
TLS without a grid. `panda-ca init` is idempotent and cheap, so `make run` calls it every time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_usage(*, sign: bool = False, encipher: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    # Positional order: digitalSignature, nonRepudiation, keyEncipherment, dataEncipherment,
    # keyAgreement, keyCertSign, cRLSign, encipherOnly, decipherOnly
    return x509.KeyUsage(sign, False, encipher, False, False, cert_sign, cert_sign, False, False)


def _builder(
    subject: x509.Name, key: PrivateKey, life: dt.timedelta, signer: x509.Certificate | None, serial: int = 0
) -> x509.CertificateBuilder:
    """Common fields; self-signed if signer is None, else notAfter capped at the signer's (never outlive it)."""
    now = _now()
    end = now + life if signer is None else min(now + life, signer.not_valid_after_utc)
    return x509.CertificateBuilder(
        subject_name=subject,
        issuer_name=subject if signer is None else signer.subject,
        public_key=key.public_key(),
        serial_number=serial or x509.random_serial_number(),
        not_valid_before=now - CLOCK_SKEW,
        not_valid_after=end,
    )


def _general_name(entry: str) -> x509.GeneralName:
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
                x509.SubjectAlternativeName([_general_name(n) for n in sans]), critical=False
            )
        return Credential(builder.sign(self.key, hashes.SHA256()), key)


def make_proxy(owner: Credential, *, hours: float = 12, limited: bool = False) -> Credential:
    """Sign an RFC 3820 proxy with the owner's key (owner may itself be a proxy)."""
    if hours <= 0:
        raise ValueError("proxy lifetime must be positive")
    key = _new_key()
    # RFC 3820 makes the subject unique by appending CN=<serial>; >>96 keeps it a readable 63-bit number
    serial = x509.random_serial_number() >> 96
    cn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, str(serial))])
    subject = x509.Name([*owner.cert.subject.rdns, cn])
    policy = POLICY_LIMITED if limited else POLICY_INHERIT_ALL
    cert = (
        _builder(subject, key, dt.timedelta(hours=hours), owner.cert, serial)
        .add_extension(_key_usage(sign=True, encipher=True), critical=True)
        .add_extension(x509.UnrecognizedExtension(PROXY_CERT_INFO_OID, _PCI_DER[policy]), critical=True)
        .sign(owner.key, hashes.SHA256())
    )
    return Credential(cert, key, (owner.cert, *owner.chain))


def proxy_policy(cert: x509.Certificate) -> str | None:
    """The proxy policy language OID of an RFC 3820 proxy, or None if cert is not a proxy."""
    try:
        ext = cert.extensions.get_extension_for_oid(PROXY_CERT_INFO_OID)
    except x509.ExtensionNotFound:
        return None
    seq, _ = der_decoder.decode(ext.value.value)
    return str(seq[len(seq) - 1][0])  # proxyPolicy is last; pCPathLenConstraint may precede it


def _write_file(path: Path, data: bytes, mode: int) -> None:
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


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def write_credential(cred: Credential, cert_path: Path, key_path: Path) -> None:
    """Write cert (plus chain) PEM, 0644, and the unencrypted PKCS#8 key PEM, 0600."""
    _write_file(Path(key_path), _key_pem(cred.key, serialization.PrivateFormat.PKCS8), 0o600)
    _write_file(Path(cert_path), b"".join(_pem(c) for c in (cred.cert, *cred.chain)), 0o644)


def write_proxy_file(cred: Credential, path: Path) -> None:
    """Write the X509_USER_PROXY layout: proxy cert, its key, then the chain; mode 0600."""
    # Globus-era tools expect "BEGIN RSA PRIVATE KEY" in proxy files, as voms-proxy-init writes it
    fmt = serialization.PrivateFormat.PKCS8
    if isinstance(cred.key, rsa.RSAPrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    data = _pem(cred.cert) + _key_pem(cred.key, fmt) + b"".join(_pem(c) for c in cred.chain)
    _write_file(Path(path), data, 0o600)


def openssl_subject_hash(cert: x509.Certificate) -> str:
    """The subject hash OpenSSL uses to find CA files in a capath directory."""
    try:
        proc = subprocess.run(
            ["openssl", "x509", "-hash", "-noout"], input=_pem(cert), capture_output=True, timeout=30
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
        wanted[f"{digest}.{n}"] = _pem(cert)
    for old in directory.iterdir():
        # A replaced CA must stop being trusted, so hash files we did not just write are removed
        if _HASH_NAME_RE.fullmatch(old.name) and old.name not in wanted:
            old.unlink()
    for name, pem in wanted.items():
        _write_file(directory / name, pem, 0o644)
    _write_file(directory / "ca.pem", b"".join(_pem(c) for c in unique), 0o644)


def _load_certs(path: Path) -> list[x509.Certificate]:
    """All certificates in a PEM file, skipping any private key block (proxy files have one)."""
    data = _PEM_KEY_RE.sub(b"", Path(path).read_bytes())
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CAError(f"no PEM certificate in {path}")
    return x509.load_pem_x509_certificates(data)


def load_credential(cert_path: Path, key_path: Path | None = None) -> Credential:
    """Load leaf + chain from cert_path and the key from key_path (default: cert_path, as in proxies)."""
    certs = _load_certs(cert_path)
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


@dataclass(frozen=True)
class PkiPaths:
    """Where create_pki puts each file: ca/ is the capath dir (0755, files 0644), private/ (0700) holds
    the CA key, certs are 0644, keys and proxies 0600. Settings.pki_dir points at root."""

    root: Path
    ca_dir: Path
    ca_cert: Path
    ca_key: Path
    hostcert: Path
    hostkey: Path
    usercert: Path
    userkey: Path
    user_proxy: Path
    pilotcert: Path
    pilotkey: Path
    pilot_proxy: Path

    @classmethod
    def under(cls, root: Path) -> PkiPaths:
        return cls(Path(root), *(Path(root) / rel for rel in _LAYOUT))


# Relative paths of the PkiPaths fields after root, in field order
_LAYOUT = """ca ca/ca.pem private/cakey.pem hostcert.pem hostkey.pem usercert.pem userkey.pem user.proxy
             pilotcert.pem pilotkey.pem pilot.proxy""".split()


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc > _now() + RENEW_MARGIN


def _load_authority(paths: PkiPaths) -> Authority | None:
    """The existing, still valid CA, or None when there is none to reuse."""
    if not paths.ca_cert.exists():
        return None
    if not paths.ca_key.exists():
        raise CAError(f"{paths.ca_cert} exists but {paths.ca_key} is missing; use --force to start over")
    key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    for cert in x509.load_pem_x509_certificates(paths.ca_cert.read_bytes()):
        if cert.public_key() == key.public_key() and _fresh(cert):
            return Authority(cert, key)  # type: ignore[arg-type]
    return None


def _ensure_cert(
    ca: Authority, cert_path: Path, key_path: Path, dn: str, kind: str, sans: Sequence[str] = ()
) -> Credential:
    """Reuse the credential on disk if the current CA signed it for this DN/SANs; else issue anew."""
    try:
        cred = load_credential(cert_path, key_path)
        cred.cert.verify_directly_issued_by(ca.cert)
        try:
            have = cred.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            have = x509.SubjectAlternativeName([])
        if (
            cred.cert.subject == dn_to_name(dn)
            and _fresh(cred.cert)
            and set(have) == set([_general_name(n) for n in sans])
        ):
            return cred
    except (OSError, ValueError, TypeError, CAError, InvalidSignature):
        pass  # missing, unreadable or from another CA: re-issue
    cred = ca.issue(dn, kind=kind, sans=sans)
    write_credential(cred, cert_path, key_path)
    return cred


def _ensure_proxy(owner: Credential, path: Path, hours: float) -> None:
    try:
        proxy = load_credential(path)
        if proxy.chain[:1] == (owner.cert,) and _fresh(proxy.cert):
            return
    except (OSError, ValueError, CAError):
        pass
    write_proxy_file(make_proxy(owner, hours=hours), path)


def create_pki(
    directory: Path,
    *,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
    user_dn: str = DEFAULT_USER_DN,
    pilot_dn: str = DEFAULT_PILOT_DN,
    ca_dn: str = DEFAULT_CA_DN,
    proxy_hours: float = 72,
    force: bool = False,
) -> PkiPaths:
    """Create (or top up) the local PKI under directory, in the PkiPaths layout."""
    if not hostnames:
        raise ValueError("at least one host name is needed")
    host_dn = HOST_DN_PREFIX + hostnames[0]
    for dn in (ca_dn, host_dn, user_dn, pilot_dn):
        dn_to_name(dn)  # fail on a typo before anything is written
    paths = PkiPaths.under(directory)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.ca_key.parent.mkdir(mode=0o700, exist_ok=True)
    paths.ca_key.parent.chmod(0o700)
    ca = None if force else _load_authority(paths)
    if ca is None:
        ca = Authority.create(ca_dn, days=CA_DAYS)
        _write_file(paths.ca_key, _key_pem(ca.key, serialization.PrivateFormat.PKCS8), 0o600)
    if not paths.ca_cert.exists() or paths.ca_cert.read_bytes() != _pem(ca.cert):
        write_hashed_ca_dir([ca.cert], paths.ca_dir)
    _ensure_cert(ca, paths.hostcert, paths.hostkey, host_dn, "host", hostnames)
    user = _ensure_cert(ca, paths.usercert, paths.userkey, user_dn, "user")
    pilot = _ensure_cert(ca, paths.pilotcert, paths.pilotkey, pilot_dn, "user")
    _ensure_proxy(user, paths.user_proxy, proxy_hours)
    _ensure_proxy(pilot, paths.pilot_proxy, proxy_hours)
    return paths


def default_pki_dir() -> Path:
    """The server's PKI directory: $PANDA_PKI_DIR, else var/pki in the checkout (Settings.pki_dir)."""
    from panda_server.settings import Settings

    return Settings.from_env().pki_dir


_POLICY_NAMES = {POLICY_INHERIT_ALL: "inherit all", POLICY_LIMITED: "limited"}


def _cmd_show(args: argparse.Namespace) -> None:
    certs = _load_certs(args.file)
    leaf, policy = certs[0], proxy_policy(certs[0])
    print(f"subject:   {name_to_dn(leaf.subject)}\nissuer:    {name_to_dn(leaf.issuer)}")
    print(
        f"not after: {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        + ("" if _fresh(leaf) else " (expiring)")
    )
    print("proxy:     " + ("no" if policy is None else "RFC 3820, " + _POLICY_NAMES.get(policy, policy)))
    owner = next((c for c in certs if proxy_policy(c) is None), None)
    if policy is not None and owner is not None:
        print(f"identity:  {name_to_dn(owner.subject)}")


def _cmd_init(args: argparse.Namespace) -> None:
    hosts = args.host or ("localhost", "127.0.0.1")
    paths = create_pki(
        args.dir, hostnames=hosts, user_dn=args.user_dn, pilot_dn=args.pilot_dn, force=args.force
    )
    print(f"PKI in {paths.root}: CA dir {paths.ca_dir}, CA key {paths.ca_key}")
    for cert in (
        paths.ca_cert,
        paths.hostcert,
        paths.usercert,
        paths.user_proxy,
        paths.pilotcert,
        paths.pilot_proxy,
    ):
        leaf = _load_certs(cert)[0]
        print(f"  {cert.name:<14}{name_to_dn(leaf.subject)}")
    print(
        f"  keys (0600): {paths.hostkey.name}, {paths.userkey.name}, {paths.pilotkey.name}; proxies hold theirs"
    )


def _cmd_proxy(args: argparse.Namespace) -> None:
    owner = load_credential(args.cert or args.dir / "usercert.pem", args.key or args.dir / "userkey.pem")
    proxy, out = (
        make_proxy(owner, hours=args.hours, limited=args.limited),
        args.out or args.dir / "user.proxy",
    )
    write_proxy_file(proxy, out)
    print(f"{out}: {name_to_dn(proxy.cert.subject)}")


_HELP = {
    "init": "Create the PKI in DIR, or top it up: an existing CA and certificates are kept, and the "
    "proxies are re-minted only when they expire within an hour (so it is safe to run every time).",
    "proxy": "Make an RFC 3820 proxy (X509_USER_PROXY layout) from an existing cert+key or proxy.",
    "show": "Print subject, issuer, expiry and proxy type of a certificate or proxy file.",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="panda-ca",
        description="Mint a local grid-style PKI for PanDA-WMS: CA, host/user/pilot certs, RFC 3820 proxies.",
        epilog="DIR defaults to $PANDA_PKI_DIR, else var/pki in the checkout. Any error exits with code 2.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir", type=Path, help="PKI directory (default $PANDA_PKI_DIR, else var/pki in the checkout)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{init,proxy,show}")
    init, proxy, show = (
        sub.add_parser(name, parents=[] if name == "show" else [common], help=text, description=text)
        for name, text in _HELP.items()
    )
    init.add_argument(
        "--host",
        action="append",
        help="host cert SAN, repeatable; the first is the CN (default localhost 127.0.0.1)",
    )
    init.add_argument("--user-dn", default=DEFAULT_USER_DN, help=f"default {DEFAULT_USER_DN}")
    init.add_argument("--pilot-dn", default=DEFAULT_PILOT_DN, help=f"default {DEFAULT_PILOT_DN}")
    init.add_argument("--force", action="store_true", help="start over: new CA, new certificates")
    proxy.add_argument("--cert", type=Path, help="certificate PEM (default DIR/usercert.pem)")
    proxy.add_argument("--key", type=Path, help="unencrypted key PEM (default DIR/userkey.pem)")
    proxy.add_argument("--out", type=Path, help="proxy file to write, mode 0600 (default DIR/user.proxy)")
    proxy.add_argument("--hours", type=float, default=12, help="lifetime (default 12)")
    proxy.add_argument("--limited", action="store_true", help="limited proxy (Globus limited policy)")
    show.add_argument("file", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the panda-ca console script."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error; argparse already printed why
        return int(exc.code or 0)
    if getattr(args, "dir", None) is None:
        args.dir = default_pki_dir()
    try:
        {"init": _cmd_init, "proxy": _cmd_proxy, "show": _cmd_show}[args.command](args)
    except OSError as exc:
        print(f"panda-ca: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except (CAError, ValueError) as exc:
        print(f"panda-ca: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
