"""The caller's identity from the TLS peer certificate (gunicorn hands us the SSL socket).

Secure ⇔ the request came over HTTPS with a client certificate that verified against the CA
directory (proxies allowed). The DN is the certificate owner's, proxy CNs stripped. Roles come
from configured DN patterns (S25 pilot_owners / production_dns); VOMS FQANs are read later.
"""

from __future__ import annotations

import functools
import re
import ssl
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from pyasn1.error import PyAsn1Error

from panda_server import pki
from panda_server.caller import Caller
from panda_server.protocol import identity
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


# verified leaf certificate (DER) → (subject DN, limited proxy?): a pilot's keep-alive connection
# asks on every request; the answer depends only on the certificate and the chain that verified it
_identities: dict[bytes, tuple[str, bool]] = {}


def _peer_identity(sock: ssl.SSLSocket) -> tuple[str, bool] | None:
    leaf = sock.getpeercert(binary_form=True)
    if not leaf:
        return None  # HTTPS without a client certificate: not secure
    found = _identities.get(leaf)
    if found is None:
        peer = sock.getpeercert()
        if not peer or not peer.get("subject"):
            return None
        subject = identity.dn_from_peercert(peer["subject"])
        found = (subject, identity.is_limited_proxy(subject) or _limited_rfc3820(_peer_chain(sock)))
        if len(_identities) > 4096:  # bounded
            _identities.clear()
        _identities[leaf] = found
    return found


def caller_from_environ(environ: Mapping[str, Any], settings: Settings) -> Caller:
    host = str(environ.get("REMOTE_ADDR") or "")
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return Caller(host=host)
    found = _peer_identity(sock)
    if found is None:
        return Caller(host=host)
    subject, limited = found
    dn = identity.bare_dn(subject)
    return Caller(
        dn=dn,
        secure=True,
        limited_proxy=limited,
        pilot=_matches(settings.pilot_dns, dn) or _matches(settings.production_dns, dn),
        production=_matches(settings.production_dns, dn),
        host=host,
    )
