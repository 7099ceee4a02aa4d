"""Grid identity: the DN of a peer certificate, normalised the classic way.

S08 JobDispatcher / S25 CoreUtils.get_bare_dn: proxy CNs are removed so that a user is the same
person whatever proxy they present; RFC 3820 proxies append /CN=<digits>, legacy ones /CN=proxy
or /CN=limited proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# getpeercert() attribute names → the short keys grid DNs use.
_SHORT = {
    "domainComponent": "DC", "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
    "organizationName": "O", "organizationalUnitName": "OU", "commonName": "CN",
    "emailAddress": "emailAddress", "userId": "UID",
}  # fmt: skip
_PROXY_CN = re.compile(r"/CN=(?:proxy|limited proxy|\d+)$")


def dn_from_peercert(subject: Iterable[Iterable[tuple[str, str]]]) -> str:
    """Slash-form DN (`/DC=org/DC=example/CN=Jane Doe`) from ssl.getpeercert()['subject']."""
    parts = []
    for rdn in subject:
        for key, value in rdn:
            parts.append(f"/{_SHORT.get(key, key)}={value}")
    return "".join(parts)


def is_limited_proxy(dn: str) -> bool:
    return "/CN=limited proxy" in dn


def bare_dn(dn: str) -> str:
    """Strip every trailing proxy CN: the identity of the end-entity certificate's owner."""
    previous = None
    while previous != dn:
        previous, dn = dn, _PROXY_CN.sub("", dn)
    return dn


def user_name(dn: str) -> str:
    """Compact name for ownership checks and display (S25 clean_user_id, simplified): the last CN
    without a trailing " <digits>" or "_<digits>" (so token subjects user-1 and user-2 stay two
    people, as in S25). A token DN's /CN=nickname:<user> is dropped as in S25, so that
    /CN=Jane Doe/CN=nickname:jdoe is "Jane Doe", the same person as her certificate's CN; a DN
    with nothing but the nickname gives the bare nickname."""
    all_cns = [c for c in re.findall(r"/CN=([^/]+)", bare_dn(dn)) if not c.isdigit()]
    cns = [c for c in all_cns if not c.startswith("nickname:")]
    if not cns:
        nick = all_cns[-1].removeprefix("nickname:").strip() if all_cns else ""
        return nick or dn
    name = cns[-1]
    name = re.sub(r"[\s_]+\d+$", "", name).strip()
    return name or cns[-1]
