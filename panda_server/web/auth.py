"""The caller's identity from the TLS peer certificate (gunicorn hands us the SSL socket).

Secure ⇔ the request came over HTTPS with a client certificate that verified against the CA
directory (proxies allowed). The DN is the certificate owner's, proxy CNs stripped. Roles come
from configured DN patterns (S25 pilot_owners / production_dns); VOMS FQANs are read later.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from typing import Any

from panda_server.caller import Caller
from panda_server.protocol import identity
from panda_server.settings import Settings


def _matches(patterns: tuple[str, ...], dn: str) -> bool:
    return any(re.search(p, dn) for p in patterns)


def caller_from_environ(environ: Mapping[str, Any], settings: Settings) -> Caller:
    host = str(environ.get("REMOTE_ADDR") or "")
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return Caller(host=host)
    peer = sock.getpeercert()
    if not peer or not peer.get("subject"):
        return Caller(host=host)  # HTTPS without a client certificate: not secure
    subject = identity.dn_from_peercert(peer["subject"])
    dn = identity.bare_dn(subject)
    return Caller(
        dn=dn,
        secure=True,
        limited_proxy=identity.is_limited_proxy(subject),
        pilot=_matches(settings.pilot_dns, dn) or _matches(settings.production_dns, dn),
        production=_matches(settings.production_dns, dn),
        host=host,
    )
