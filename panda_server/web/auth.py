"""The caller's identity from the TLS peer certificate (gunicorn hands us the SSL socket).

Secure ⇔ the request came over HTTPS with a client certificate that verified against the CA
directory (proxies allowed), or with a WLCG bearer token that verified (tokens.py; the token wins
over a certificate on the same request). The DN is the certificate owner's, proxy CNs stripped. FQANs come
from the VOMS attribute certificate in the proxy, believed only after protocol/voms.py checked
it against the trusted VOMS servers; a bad AC makes `credential_error`, which refuses every
active call. Roles (`roles()`, pure) come from FQAN patterns and DN patterns in Settings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from pyasn1.error import PyAsn1Error

from panda_server import pki, tokens
from panda_server.caller import Caller
from panda_server.protocol import identity, voms
from panda_server.settings import Settings


@functools.lru_cache(maxsize=4096)
def _matches(patterns: tuple[str, ...], dn: str) -> bool:
    return any(re.search(p, dn) for p in patterns)


def _peer_chain(sock: ssl.SSLSocket) -> tuple[bytes, ...]:
    """DER of the peer's leaf and, where Python exposes it, its verified chain (leaf first)."""
    leaf = sock.getpeercert(binary_form=True)
    ders = [leaf] if leaf else []
    # public in Python >= 3.13 (DER bytes); the same call on the _ssl object since 3.10
    public = getattr(sock, "get_verified_chain", None)
    private = getattr(getattr(sock, "_sslobj", None), "get_verified_chain", None)
    try:
        chain = public() if public is not None else (private() if private is not None else None)
    except (ssl.SSLError, ValueError):
        chain = None
    for cert in chain or ():
        der = cert if isinstance(cert, bytes) else cert.public_bytes(ssl._ssl.ENCODING_DER)  # type: ignore[attr-defined]
        if der not in ders:
            ders.append(der)
    return tuple(ders)


@functools.lru_cache(maxsize=1024)
def _limited_rfc3820(ders: tuple[bytes, ...]) -> bool:
    """True if a certificate of the chain is an RFC 3820 proxy with the Globus limited policy (a
    proxy signed by a limited proxy is limited too); an unreadable proxy policy counts as limited."""
    for der in ders:
        try:
            policy = pki.proxy_policy(x509.load_der_x509_certificate(der))
        except (ValueError, PyAsn1Error, IndexError, TypeError):
            return True
        if policy == pki.POLICY_LIMITED:
            return True
    return False


@functools.lru_cache(maxsize=8)
def _trusted_voms(directory: Path) -> dict[str, tuple[x509.Certificate, ...]]:
    """The VOMS server certificates, read once per process (restart the server after a change)."""
    return voms.load_vomsdir(directory)


def _fqans(
    ders: tuple[bytes, ...], settings: Settings, now: dt.datetime
) -> tuple[tuple[str, ...], dt.datetime | None]:
    chain = [x509.load_der_x509_certificate(d) for d in ders]
    return voms.chain_fqans(chain, _trusted_voms(settings.vomsdir), now)


@dataclasses.dataclass(frozen=True)
class _Peer:
    subject: str
    limited: bool
    fqans: tuple[str, ...] = ()
    fqans_until: dt.datetime | None = None  # the ACs' notAfter: past it the FQANs are void
    error: str | None = None  # why the credential's VOMS attributes were not believed


# verified leaf certificate (DER) → what it says: a pilot's keep-alive connection asks on every
# request; the answer depends only on the certificate, the chain that verified it, and the clock
_identities: dict[bytes, _Peer] = {}


def _peer_identity(sock: ssl.SSLSocket, settings: Settings, now: dt.datetime) -> _Peer | None:
    leaf = sock.getpeercert(binary_form=True)
    if not leaf:
        return None  # HTTPS without a client certificate: not secure
    found = _identities.get(leaf)
    if found is None:
        peer = sock.getpeercert()
        if not peer or not peer.get("subject"):
            return None
        subject = identity.dn_from_peercert(peer["subject"])
        ders = _peer_chain(sock)
        limited = identity.is_limited_proxy(subject) or _limited_rfc3820(ders)
        try:
            fqans, until = _fqans(ders, settings, now)
            found = _Peer(subject, limited, fqans, until)
        except (voms.VomsError, ValueError) as exc:
            found = _Peer(subject, limited, error=f"VOMS attributes rejected: {exc}")
        if len(_identities) > 4096:  # bounded
            _identities.clear()
        _identities[leaf] = found
    if found.fqans_until is not None and now > found.fqans_until:
        return dataclasses.replace(
            found, fqans=(), error="the VOMS attributes of this proxy have expired; renew it"
        )
    return found


def roles(dn: str, fqans: tuple[str, ...], settings: Settings) -> tuple[bool, bool, bool]:
    """(may act for an authorized VO, pilot role, production role) of an identity. DNs listed in
    PANDA_PILOT_DNS/PRODUCTION_DNS (S25 pilot_owners) are trusted whatever their VOMS attributes."""
    by_dn_production = _matches(settings.production_dns, dn)
    by_dn_pilot = by_dn_production or _matches(settings.pilot_dns, dn)
    in_vo = any(f == f"/{vo}" or f.startswith(f"/{vo}/") for f in fqans for vo in settings.vos)
    production = by_dn_production or any(_matches(settings.production_fqans, f) for f in fqans)
    pilot = production or by_dn_pilot or any(_matches(settings.pilot_fqans, f) for f in fqans)
    return by_dn_pilot or in_vo, pilot, production


def _token_caller(header: str, settings: Settings, host: str) -> Caller:
    """A caller identified by `Authorization: Bearer` (HTTPS only). A token that does not verify is
    never ignored in favour of a certificate: the request is refused with the token's reason."""
    try:
        token = tokens.bearer_token(header)
        found = tokens.verify(token or "", settings) if token else None
    except tokens.TokenError as exc:
        return Caller(secure=True, credential_error=f"bearer token refused: {exc}", host=host)
    if found is None:
        return Caller(host=host)
    member, pilot, production = roles(found.dn, found.fqans, settings)
    return Caller(dn=found.dn, secure=True, fqans=found.fqans, vo_member=member, pilot=pilot,
                  production=production, host=host)  # fmt: skip


def caller_from_environ(environ: Mapping[str, Any], settings: Settings) -> Caller:
    host = str(environ.get("REMOTE_ADDR") or "")
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return Caller(host=host)  # plain HTTP: never secure, whatever the headers say
    header = environ.get("HTTP_AUTHORIZATION")
    if header:
        return _token_caller(str(header), settings, host)
    found = _peer_identity(sock, settings, dt.datetime.now(dt.UTC))
    if found is None:
        return Caller(host=host)
    dn = identity.bare_dn(found.subject)
    member, pilot, production = roles(dn, found.fqans, settings)
    return Caller(
        dn=dn,
        secure=True,
        limited_proxy=found.limited,
        fqans=found.fqans,
        vo_member=member,
        pilot=pilot,
        production=production,
        credential_error=found.error,
        host=host,
    )
