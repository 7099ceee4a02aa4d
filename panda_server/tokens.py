"""WLCG JWT bearer tokens (`Authorization: Bearer <jwt>`): the second way in, next to certificates.

S25 srvcore/panda_request.py decodes the token, then treats the caller as if it had presented a
certificate: the DN is the `name` claim (or `sub`) plus `/CN=nickname:<preferred_username>`, and
the token's groups become VOMS FQANs, so the same role checks apply. Here the trusted issuers and
their public keys are configured locally (PANDA_TOKEN_ISSUERS, no network fetch), only RS256 and
ES256 are accepted, and audience, expiry, not-before and issued-at are checked with `now` passed in.
Every refusal is a TokenError whose text is safe for clients and logs (it never holds the token).
`mint` signs test tokens with the local issuer key that `panda-ca init` creates (`panda-ca token`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from panda_server.settings import Settings

LOCAL_ISSUER = "https://localhost/pandawms-token-issuer"  # the issuer `panda-ca token` signs as
DEFAULT_AUDIENCE = "pandaserver"  # accepted next to the server's https URL when none is configured
MAX_TOKEN_BYTES = 16 * 1024  # an Authorization header above this is refused before any decoding
ALGORITHMS = ("RS256", "ES256")  # never `none`, never HS* (a public key must not become an HMAC secret)
ROLE_GROUPS = ("pilot", "production")  # WLCG /atlas/pilot ≙ VOMS /atlas/Role=pilot
WLCG_VERSION = "1.0"

log = logging.getLogger(__name__)

_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9\-]{0,19}")
_Key = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z


@dataclass(frozen=True)
class TokenIdentity:
    dn: str  # S25 form, e.g. "/CN=Jane Doe/CN=nickname:jdoe"
    fqans: tuple[str, ...]  # e.g. ("/atlas", "/atlas/Role=pilot")
    subject: str
    issuer: str
    expires: dt.datetime  # aware UTC


class TokenError(Exception):
    """A refused token; str(exc) is one line, safe to show a client and to log (never the token)."""


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 6750);
    None if there is no header. TokenError if it is not a well-formed Bearer credential."""
    if authorization_header is None or not authorization_header.strip():
        return None
    if len(authorization_header) > MAX_TOKEN_BYTES:
        raise TokenError(
            f"Authorization header too large ({len(authorization_header)} bytes, limit {MAX_TOKEN_BYTES})"
        )
    parts = authorization_header.split()
    scheme = parts[0]
    if scheme.lower() != "bearer":
        shown = f" {scheme!r}" if _SCHEME.fullmatch(scheme) else ""
        raise TokenError(f"unsupported Authorization scheme{shown} (expected Bearer)")
    if len(parts) != 2 or not _TOKEN68.fullmatch(parts[1]):
        raise TokenError("malformed Authorization header (expected 'Bearer <token>')")
    return parts[1]


def verify(token: str, settings: Settings, *, now: dt.datetime | None = None) -> TokenIdentity:
    """Check a bearer token against the configured issuers, keys and audiences; TokenError if refused."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError(f"token too large ({len(token)} bytes, limit {MAX_TOKEN_BYTES})")
    header, claims = _unverified(token)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise TokenError(f"token algorithm {_shown(alg)} not allowed (accepted: {', '.join(ALGORITHMS)})")
    if "crit" in header or header.get("b64", True) is not True:
        raise TokenError("malformed token (critical header extensions are not supported)")
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise TokenError("token has no issuer (iss)")
    keys = _issuer_keys(settings.token_issuers).get(issuer)
    if keys is None:
        raise TokenError(f"token issuer {_shown(issuer)} not trusted")
    _check_signature(token, alg, header.get("kid"), issuer, keys)
    _check_claims(claims, settings, now or dt.datetime.now(dt.UTC))
    vos = issuer_vos(settings.token_issuer_vos).get(issuer, ())
    return TokenIdentity(
        dn=token_dn(claims),
        fqans=tuple(f for f in token_fqans(claims, settings.token_scope_fqans) if in_vos(f, vos)),
        subject=claims["sub"],
        issuer=issuer,
        expires=dt.datetime.fromtimestamp(claims["exp"], dt.UTC),
    )


def mint(
    key_path: Path,
    *,
    issuer: str,
    subject: str,
    audience: str | Sequence[str],
    groups: Sequence[str] = (),
    scope: str = "",
    lifetime: float = 3600,
    name: str | None = None,
    preferred_username: str | None = None,
    now: dt.datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A signed WLCG profile token (RS256 for an RSA key, ES256 for a P-256 key). `extra` adds or
    replaces claims; a None value there removes the claim (tests use it to drop `exp` or `sub`)."""
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        alg = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        alg = "ES256"
    else:
        raise ValueError(f"{key_path}: not an RSA or P-256 EC private key")
    t = int((now or dt.datetime.now(dt.UTC)).timestamp())
    claims: dict[str, Any] = {"wlcg.ver": WLCG_VERSION, "iss": issuer, "sub": subject,
                              "aud": audience if isinstance(audience, str) else list(audience),
                              "iat": t, "nbf": t, "exp": t + int(lifetime), "jti": str(uuid.uuid4())}  # fmt: skip
    optional = {
        "wlcg.groups": list(groups),
        "scope": scope,
        "name": name,
        "preferred_username": preferred_username,
    }
    claims.update({k: v for k, v in optional.items() if v})
    for claim, value in (extra or {}).items():
        if value is None:
            claims.pop(claim, None)
        else:
            claims[claim] = value
    return jwt.encode(claims, key, algorithm=alg, headers={"typ": "JWT"})


# --- identity ---------------------------------------------------------------------------------


def _dn_value(text: Any) -> str:
    """A claim as a DN component: no slashes (they would forge extra RDNs), no control characters."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f/]", " ", str(text)).split())[:256]


def token_dn(claims: Mapping[str, Any]) -> str:
    """S25 panda_request: the `name` claim, each word capitalised, else `sub`; then
    /CN=nickname:<preferred_username> when present. As a slash-form DN: /CN=<name>[/CN=nickname:x]."""
    name = _dn_value(claims.get("name") or "")
    if name:
        base = " ".join(w[:1].upper() + w[1:].lower() for w in name.split())
    else:
        base = _dn_value(claims["sub"]) or "unknown"
    nickname = _dn_value(claims.get("preferred_username") or "")
    return f"/CN={base}" + (f"/CN=nickname:{nickname}" if nickname else "")


def issuer_vos(entries: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """PANDA_TOKEN_ISSUER_VOS entries ISSUER=VO[,VO] → {issuer: (vo, ...)}."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        issuer, _, vos = entry.rpartition("=")
        out[issuer.strip()] = out.get(issuer.strip(), ()) + tuple(
            v.strip() for v in vos.split(",") if v.strip()
        )
    return out


def in_vos(fqan: str, vos: Sequence[str]) -> bool:
    return any(fqan == f"/{vo}" or fqan.startswith(f"/{vo}/") for vo in vos)


def group_fqan(group: str) -> str:
    """A WLCG group as a VOMS FQAN: /atlas/pilot → /atlas/Role=pilot, /atlas/production →
    /atlas/Role=production (VO-level groups only: a subgroup's manager must not be able to grant
    a role); /atlas, /atlas/de, /atlas/de/production and /atlas/Role=production stay as they are.
    IAM-style groups without the leading slash get one."""
    parts = [p for p in group.strip().split("/") if p]
    if len(parts) == 2 and parts[-1] in ROLE_GROUPS:
        parts[-1] = "Role=" + parts[-1]
    return "/" + "/".join(parts)


def token_fqans(claims: Mapping[str, Any], scope_fqans: Sequence[str] = ()) -> tuple[str, ...]:
    """FQANs from `wlcg.groups` (else the IAM `groups` claim), then from the scopes mapped by
    PANDA_TOKEN_SCOPE_FQANS entries SCOPE=FQAN; duplicates dropped, order kept."""
    groups = claims.get("wlcg.groups", claims.get("groups", []))
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise TokenError("malformed token (wlcg.groups is not a list of strings)")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise TokenError("malformed token (scope is not a string)")
    mapping: dict[str, list[str]] = {}
    for entry in scope_fqans:
        key, _, fqan = entry.partition("=")
        mapping.setdefault(key.strip(), []).append(fqan.strip())
    fqans = [group_fqan(g) for g in groups if g.strip("/ ")]
    fqans += [f for s in scope.split() for f in mapping.get(s, [])]
    return tuple(dict.fromkeys(f for f in fqans if f))


# --- checks -----------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    """A claim or header value quoted for a message: printable and short (the caller chose it)."""
    text = re.sub(r"[^\x20-\x7e]", "?", str(value))
    return repr(text if len(text) <= 120 else text[:117] + "...")


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before the signature check (to pick the issuer's keys)."""
    try:
        parts = jwt.PyJWS().decode_complete(token, options={"verify_signature": False})
        claims = json.loads(parts["payload"])
    except (jwt.InvalidTokenError, ValueError, RecursionError, TypeError):
        raise TokenError("malformed token") from None
    if not isinstance(claims, dict):
        raise TokenError("malformed token (claims are not a JSON object)")
    return parts["header"], claims


def _check_signature(
    token: str, alg: str, kid: Any, issuer: str, keys: tuple[tuple[str | None, _Key], ...]
) -> None:
    if not keys:
        raise TokenError(
            f"token issuer {_shown(issuer)} has no usable key on this server (see the server log)"
        )
    usable = [(k, key) for k, key in keys if _fits(key, alg)]
    if kid is not None and any(k is not None for k, _ in usable):
        usable = [(k, key) for k, key in usable if k is None or k == kid]
    for _, key in usable:
        try:
            jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg])
            return
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError):
            continue
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
    raise TokenError("token signature does not verify")


def _fits(key: _Key, alg: str) -> bool:
    if alg == "RS256":
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def _timestamp(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    # a NumericDate of year 1970..9999; NaN fails the comparison too
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= _MAX_TIME:
        raise TokenError(f"malformed token ({name} is not a valid time)")
    return float(value)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def accepted_audiences(settings: Settings) -> tuple[str, ...]:
    return settings.token_audiences or (settings.url_ssl, DEFAULT_AUDIENCE)


def _check_claims(claims: Mapping[str, Any], settings: Settings, now: dt.datetime) -> None:
    ver = claims.get("wlcg.ver")
    if ver is not None and ver != WLCG_VERSION:
        raise TokenError(f"token wlcg.ver {_shown(ver)} not supported (expected {WLCG_VERSION})")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise TokenError("token has no subject (sub)")
    t, leeway = now.timestamp(), settings.token_leeway
    exp, nbf, iat = (_timestamp(claims, c) for c in ("exp", "nbf", "iat"))
    if exp is None:
        raise TokenError("token has no expiry (exp)")
    if t >= exp + leeway:
        raise TokenError(f"token expired at {_when(exp)}")
    if nbf is not None and t + leeway < nbf:
        raise TokenError(f"token not valid before {_when(nbf)}")
    if iat is not None and t + leeway < iat:
        raise TokenError(f"token issued in the future ({_when(iat)})")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not auds or not all(isinstance(a, str) for a in auds):
        raise TokenError("token has no audience (aud)")
    expected = accepted_audiences(settings)
    if not {a.rstrip("/") for a in auds} & {a.rstrip("/") for a in expected}:
        shown = ", ".join(_shown(a) for a in auds[:5])
        raise TokenError(f"token audience {shown} not accepted (expected one of {', '.join(expected)})")


# --- keys -------------------------------------------------------------------------------------


def load_issuers(entries: Sequence[str]) -> dict[str, tuple[tuple[str | None, _Key], ...]]:
    """PANDA_TOKEN_ISSUERS entries ISSUER=FILE → {issuer: ((kid, public key), ...)}. FILE is a PEM
    public key or certificate (no kid) or a JWKS JSON file; an issuer may be listed more than once
    (key rotation). ValueError names the entry that cannot be used."""
    found: dict[str, list[tuple[str | None, _Key]]] = {}
    for entry in entries:
        issuer, sep, path = entry.rpartition("=")
        if not sep or not issuer.strip() or not path.strip():
            raise ValueError(f"PANDA_TOKEN_ISSUERS entry {entry!r}: expected ISSUER=PUBLIC_KEY_FILE")
        try:
            keys = _read_keys(Path(path.strip()))
        except (OSError, ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ValueError(
                f"PANDA_TOKEN_ISSUERS {issuer.strip()}: cannot load {path.strip()}: {exc}"
            ) from None
        found.setdefault(issuer.strip(), []).extend(keys)
    return {iss: tuple(keys) for iss, keys in found.items()}


def _read_keys(path: Path) -> list[tuple[str | None, _Key]]:
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        keys = [(k.key_id, k.key) for k in jwt.PyJWKSet.from_json(data.decode()).keys]
    elif b"BEGIN CERTIFICATE" in data:
        keys = [(None, x509.load_pem_x509_certificate(data).public_key())]
    else:
        keys = [(None, serialization.load_pem_public_key(data))]
    keys = [(kid, key) for kid, key in keys if isinstance(key, _Key)]
    if not keys:
        raise ValueError("no RSA or EC public key in it")
    return keys


@functools.lru_cache(maxsize=8)
def _issuer_keys(entries: tuple[str, ...]) -> dict[str, tuple[tuple[str | None, _Key], ...]]:
    """Keys loaded once per process per configuration. A broken entry is logged and leaves its
    issuer without keys (its tokens are refused), so one bad file does not lock out the others."""
    keys: dict[str, tuple[tuple[str | None, _Key], ...]] = {}
    for entry in entries:
        try:
            for issuer, found in load_issuers([entry]).items():
                keys[issuer] = keys.get(issuer, ()) + found
        except ValueError as exc:
            log.error("token issuer not usable: %s", exc)
            keys.setdefault(entry.rpartition("=")[0].strip(), ())
    return keys
