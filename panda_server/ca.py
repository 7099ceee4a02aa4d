"""panda-ca: the local PKI of a PanDA-WMS installation (`var/pki` by default).

Classic PanDA authenticates every HTTPS caller by its grid certificate or proxy; this mints an
equivalent self-contained PKI so that the server, clients and pilots run over real mutual TLS
without a grid. `panda-ca init` is idempotent and cheap, so `make run` calls it every time. The
certificate minting itself is in panda_server/pki.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from panda_server.pki import (  # noqa: F401  (re-exported: panda_server.ca is the public facade)
    CA_DAYS,
    CLOCK_SKEW,
    DEFAULT_CA_DN,
    DEFAULT_PILOT_DN,
    DEFAULT_USER_DN,
    HOST_DN_PREFIX,
    POLICY_INHERIT_ALL,
    POLICY_LIMITED,
    PROXY_CERT_INFO_OID,
    RENEW_MARGIN,
    Authority,
    CAError,
    Credential,
    cert_pem,
    dn_to_name,
    ensure_keypair,
    general_name,
    key_pem,
    load_certs,
    load_credential,
    make_proxy,
    name_to_dn,
    openssl_subject_hash,
    proxy_policy,
    utcnow,
    write_credential,
    write_file,
    write_hashed_ca_dir,
    write_proxy_file,
)  # fmt: skip
from panda_server.pki_voms import make_voms_proxy
from panda_server.protocol import voms


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
    jobsign_key: Path  # the server's job-specification signing key (RSA, 0600)
    jobsign_pub: Path  # its public half, which pilots use to verify jobs (0644)
    token_issuer_key: Path  # the local WLCG token issuer's signing key (RSA, 0600)
    token_issuer_pub: Path  # its public half, which the server trusts for Bearer tokens (0644)
    vomscert: Path  # the local VOMS server's certificate, which signs the attribute certificates
    vomskey: Path
    voms_dir: Path  # trusted VOMS servers: <vo>/*.pem (and <vo>/<host>.lsc for voms-proxy-info)
    production_proxy: Path  # the user's proxy with the production role

    @classmethod
    def under(cls, root: Path) -> PkiPaths:
        return cls(Path(root), *(Path(root) / rel for rel in _LAYOUT))


# Relative paths of the PkiPaths fields after root, in field order
_LAYOUT = """ca ca/ca.pem private/cakey.pem hostcert.pem hostkey.pem usercert.pem userkey.pem user.proxy
             pilotcert.pem pilotkey.pem pilot.proxy private/jobsign-key.pem jobsign-pub.pem
             private/token-issuer-key.pem token-issuer-pub.pem vomscert.pem private/vomskey.pem vomsdir
             production.proxy""".split()

# The local VO: one VOMS server, and the attributes each proxy of create_pki carries
VO = "atlas"
VOMS_DN = "/DC=org/DC=pandawms/OU=Hosts/CN=voms.pandawms.local"
VOMS_URI = "voms.pandawms.local:15000"
USER_FQANS = ("/atlas",)
PRODUCTION_FQANS = ("/atlas/Role=production", "/atlas")
PILOT_FQANS = ("/atlas/Role=pilot", "/atlas")


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc > utcnow() + RENEW_MARGIN


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
            and set(have) == set([general_name(n) for n in sans])
        ):
            return cred
    except (OSError, ValueError, TypeError, CAError, InvalidSignature):
        pass  # missing, unreadable or from another CA: re-issue
    cred = ca.issue(dn, kind=kind, sans=sans)
    write_credential(cred, cert_path, key_path)
    return cred


def _ensure_proxy(
    owner: Credential, path: Path, hours: float, voms_cred: Credential, fqans: Sequence[str]
) -> None:
    """Keep the proxy if it is owner's, fresh, and carries a fresh AC of this VOMS server with fqans."""
    try:
        proxy = load_credential(path)
        chain = (proxy.cert, *proxy.chain)
        have, until = voms.chain_fqans(chain, {VO: (voms_cred.cert,)}, utcnow())
        if (
            proxy.chain[:1] == (owner.cert,)
            and _fresh(proxy.cert)
            and have == tuple(fqans)
            and until is not None
            and until > utcnow() + RENEW_MARGIN
        ):
            return
    except (OSError, ValueError, CAError, voms.VomsError):
        pass
    write_proxy_file(make_voms_proxy(owner, voms_cred, vo=VO, fqans=fqans, uri=VOMS_URI, hours=hours), path)


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
        write_file(paths.ca_key, key_pem(ca.key, serialization.PrivateFormat.PKCS8), 0o600)
    if not paths.ca_cert.exists() or paths.ca_cert.read_bytes() != cert_pem(ca.cert):
        write_hashed_ca_dir([ca.cert], paths.ca_dir)
    _ensure_cert(ca, paths.hostcert, paths.hostkey, host_dn, "host", hostnames)
    user = _ensure_cert(ca, paths.usercert, paths.userkey, user_dn, "user")
    pilot = _ensure_cert(ca, paths.pilotcert, paths.pilotkey, pilot_dn, "user")
    voms_cred = _ensure_cert(ca, paths.vomscert, paths.vomskey, VOMS_DN, "host", [VOMS_DN.rsplit("=", 1)[1]])
    _write_vomsdir(paths.voms_dir, voms_cred.cert, ca.cert)
    _ensure_proxy(user, paths.user_proxy, proxy_hours, voms_cred, USER_FQANS)
    _ensure_proxy(user, paths.production_proxy, proxy_hours, voms_cred, PRODUCTION_FQANS)
    _ensure_proxy(pilot, paths.pilot_proxy, proxy_hours, voms_cred, PILOT_FQANS)
    ensure_keypair(paths.jobsign_key, paths.jobsign_pub)
    ensure_keypair(paths.token_issuer_key, paths.token_issuer_pub)
    return paths


def _write_vomsdir(directory: Path, server: x509.Certificate, authority: x509.Certificate) -> None:
    """<dir>/<vo>/<host>.pem (what the PanDA server trusts) and <host>.lsc (what voms-proxy-info reads)."""
    host = VOMS_URI.split(":")[0]
    vo_dir = directory / VO
    vo_dir.mkdir(parents=True, exist_ok=True)
    if not (vo_dir / f"{host}.pem").exists() or (vo_dir / f"{host}.pem").read_bytes() != cert_pem(server):
        write_file(vo_dir / f"{host}.pem", cert_pem(server), 0o644)
        lsc = f"{name_to_dn(server.subject)}\n{name_to_dn(authority.subject)}\n".encode()
        write_file(vo_dir / f"{host}.lsc", lsc, 0o644)


def default_pki_dir() -> Path:
    """The server's PKI directory: $PANDA_PKI_DIR, else var/pki in the checkout (Settings.pki_dir)."""
    from panda_server.settings import Settings

    return Settings.from_env().pki_dir


_POLICY_NAMES = {POLICY_INHERIT_ALL: "inherit all", POLICY_LIMITED: "limited"}


def _cmd_show(args: argparse.Namespace) -> None:
    certs = load_certs(args.file)
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
        paths.production_proxy,
        paths.pilotcert,
        paths.pilot_proxy,
        paths.vomscert,
    ):
        leaf = load_certs(cert)[0]
        fqans = ",".join(f for ac in voms.attribute_certificates(leaf) for f in ac.fqans)
        print(f"  {cert.name:<17}{name_to_dn(leaf.subject)}" + (f"  VOMS {fqans}" if fqans else ""))
    print(f"  VOMS server of VO {VO} trusted in {paths.voms_dir}")
    print(
        f"  keys (0600): {paths.hostkey.name}, {paths.userkey.name}, {paths.pilotkey.name}; proxies hold theirs"
    )


def _cmd_proxy(args: argparse.Namespace) -> None:
    owner = load_credential(args.cert or args.dir / "usercert.pem", args.key or args.dir / "userkey.pem")
    out = args.out or args.dir / "user.proxy"
    if args.fqan:
        paths = PkiPaths.under(args.dir)
        server = load_credential(paths.vomscert, paths.vomskey)
        vo = args.fqan[0].split("/")[1] if args.fqan[0].count("/") >= 1 else ""
        if not vo or any(f != f"/{vo}" and not f.startswith(f"/{vo}/") for f in args.fqan):
            raise CAError(
                f"FQANs must all start with /<vo>, as in /{VO} or /{VO}/Role=production: {args.fqan}"
            )
        proxy = make_voms_proxy(owner, server, vo=vo, fqans=args.fqan, uri=VOMS_URI, hours=args.hours,
                                limited=args.limited)  # fmt: skip
    else:
        proxy = make_proxy(owner, hours=args.hours, limited=args.limited)
    write_proxy_file(proxy, out)
    print(f"{out}: {name_to_dn(proxy.cert.subject)}" + (f"  VOMS {','.join(args.fqan)}" if args.fqan else ""))


_HELP = {
    "init": "Create the PKI in DIR, or top it up: an existing CA and certificates are kept, and the "
    "proxies are re-minted only when they expire within an hour (so it is safe to run every time).",
    "proxy": "Make an RFC 3820 proxy (X509_USER_PROXY layout) from an existing cert+key or proxy.",
    "show": "Print subject, issuer, expiry and proxy type of a certificate or proxy file.",
    "token": "Mint a WLCG JWT bearer token signed by DIR's local token issuer key (for tests and "
    "`make run`): the server trusts it when PANDA_TOKEN_ISSUERS lists the issuer with "
    "DIR/token-issuer-pub.pem. Send it as `Authorization: Bearer <token>` (client: PANDA_AUTH_TOKEN "
    "or PANDA_AUTH_TOKEN_FILE).",
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{init,proxy,show,token}")
    init, proxy, show, token = (
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
    proxy.add_argument(
        "--fqan",
        action="append",
        help="add a VOMS attribute certificate signed by DIR's VOMS server with this FQAN, repeatable "
        "(e.g. --fqan /atlas/Role=production --fqan /atlas); without it the proxy has no VOMS attributes",
    )
    show.add_argument("file", type=Path)
    _token_arguments(token)
    return parser


def _token_arguments(token: argparse.ArgumentParser) -> None:
    from panda_server.tokens import DEFAULT_AUDIENCE, LOCAL_ISSUER

    token.add_argument("--sub", required=True, help="subject claim (sub), e.g. jdoe")
    token.add_argument("--name", help="name claim; the DN becomes /CN=<name>[/CN=nickname:<username>]")
    token.add_argument("--username", help="preferred_username claim (the DN's /CN=nickname:...)")
    token.add_argument(
        "--group",
        action="append",
        default=[],
        help="wlcg.groups entry, repeatable: /atlas (VO member), /atlas/pilot or /atlas/production "
        "(the server reads these as /atlas/Role=pilot, /atlas/Role=production)",
    )
    token.add_argument("--scope", default="", help="space-separated scopes (see PANDA_TOKEN_SCOPE_FQANS)")
    token.add_argument(
        "--aud", action="append", help=f"audience, repeatable (default {DEFAULT_AUDIENCE}, which the server accepts "
        "when PANDA_TOKEN_AUDIENCES is empty)",
    )  # fmt: skip
    token.add_argument("--hours", type=float, default=1, help="lifetime in hours (default 1)")
    token.add_argument("--issuer", default=LOCAL_ISSUER, help=f"iss claim (default {LOCAL_ISSUER})")
    token.add_argument("--key", type=Path, help="issuer key PEM (default DIR/private/token-issuer-key.pem)")
    token.add_argument("--out", type=Path, help="write the token to this file, mode 0600 (default: print it)")


def _cmd_token(args: argparse.Namespace) -> None:
    from panda_server import tokens

    key = args.key or PkiPaths.under(args.dir).token_issuer_key
    if not key.exists():
        raise CAError(f"no token issuer key at {key}; run `panda-ca init` first (or pass --key)")
    if not 0 < args.hours <= 8760:  # also refuses nan and inf
        raise CAError(f"--hours must be more than 0 and at most 8760 (a year), not {args.hours:g}")
    token = tokens.mint(key, issuer=args.issuer, subject=args.sub, audience=args.aud or tokens.DEFAULT_AUDIENCE,
                        groups=args.group, scope=args.scope, lifetime=args.hours * 3600, name=args.name,
                        preferred_username=args.username)  # fmt: skip
    if args.out is None:
        print(token)
        return
    write_file(args.out, (token + "\n").encode(), 0o600)
    fqans = tokens.token_fqans({"wlcg.groups": args.group})
    dn = tokens.token_dn({"sub": args.sub, "name": args.name, "preferred_username": args.username})
    shown = f"  FQANs {','.join(fqans)}" if fqans else ""
    print(f"{args.out}: token for {dn}{shown}, valid {args.hours:g} h, issuer {args.issuer}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the panda-ca console script."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error; argparse already printed why
        return int(exc.code or 0)
    if getattr(args, "dir", None) is None:
        args.dir = default_pki_dir()
    try:
        {"init": _cmd_init, "proxy": _cmd_proxy, "show": _cmd_show, "token": _cmd_token}[args.command](args)
    except OSError as exc:
        print(f"panda-ca: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except (CAError, ValueError) as exc:
        print(f"panda-ca: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
