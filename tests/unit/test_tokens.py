"""panda_server.tokens with real keys: every token here is signed by mint() (or crafted by hand for
the attacks mint refuses to produce) and checked by verify() against PEM/JWKS files on disk."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from panda_server import pki, tokens
from panda_server.protocol.identity import user_name
from panda_server.settings import Settings
from panda_server.tokens import TokenError

ISS = "https://iam.example.org/"
NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The trusted issuer's RSA pair, a foreign RSA pair, an EC P-256 pair, and a JWKS file."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("rsa", "foreign"):
        pki.ensure_keypair(d / f"{name}-key.pem", d / f"{name}-pub.pem")
        out[name], out[f"{name}_pub"] = d / f"{name}-key.pem", d / f"{name}-pub.pem"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    out["ec"], out["ec_pub"] = d / "ec-key.pem", d / "ec-pub.pem"
    out["ec"].write_bytes(ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))  # fmt: skip
    out["ec_pub"].write_bytes(ec_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    rsa_pub = serialization.load_pem_public_key(out["rsa_pub"].read_bytes())
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_pub))
    out["jwks"] = d / "jwks.json"
    out["jwks"].write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return out


def settings(keys: dict[str, Path], **overrides) -> Settings:
    values = {
        "server_name": "panda.example.org",
        "https_port": 25443,
        "token_issuers": (f"{ISS}={keys['rsa_pub']}", f"https://ec.example.org={keys['ec_pub']}"),
        "token_issuer_vos": (f"{ISS}=atlas", "https://ec.example.org=atlas"),
    }
    return Settings(**{**values, **overrides})


def test_an_issuer_grants_fqans_of_its_own_vos_only(keys) -> None:
    """A second VO's issuer cannot hand out ATLAS roles; an unbound issuer grants no FQAN at all."""
    token = tokens.mint(keys["rsa"], issuer=ISS, subject="u", audience="pandaserver",
                        groups=["/atlas", "/atlas/production", "/cms", "/cms/production"])  # fmt: skip
    assert tokens.verify(token, settings(keys)).fqans == ("/atlas", "/atlas/Role=production")
    cms = settings(keys, token_issuer_vos=(f"{ISS}=cms",))
    assert tokens.verify(token, cms).fqans == ("/cms", "/cms/Role=production")
    assert tokens.verify(token, settings(keys, token_issuer_vos=())).fqans == ()


def token(keys: dict[str, Path], key: str = "rsa", **kwargs) -> str:
    args = dict(issuer=ISS, subject="a1b2-c3", audience="pandaserver", now=NOW, name="jane doe",
                preferred_username="jdoe", groups=["/atlas", "/atlas/pilot"])  # fmt: skip
    args.update(kwargs)
    return tokens.mint(keys[key], **args)


def refused(tok: str, s: Settings, now: dt.datetime = NOW) -> str:
    with pytest.raises(TokenError) as info:
        tokens.verify(tok, s, now=now)
    text = str(info.value)
    assert "\n" not in text
    for segment in tok.split("."):  # never the token or any part of it
        assert len(segment) < 8 or segment not in text
    return text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------- accepted tokens


def test_good_token_gives_s25_dn_and_fqans(keys) -> None:
    ident = tokens.verify(token(keys), settings(keys), now=NOW + dt.timedelta(minutes=5))
    assert ident.dn == "/CN=Jane Doe/CN=nickname:jdoe"  # S25 capitalises each word of `name`
    assert ident.fqans == ("/atlas", "/atlas/Role=pilot")
    assert (ident.subject, ident.issuer) == ("a1b2-c3", ISS)
    assert ident.expires == NOW + dt.timedelta(hours=1) and ident.expires.tzinfo is not None


def test_dn_without_name_is_the_subject(keys) -> None:
    ident = tokens.verify(token(keys, name=None, preferred_username=None), settings(keys), now=NOW)
    assert ident.dn == "/CN=a1b2-c3"
    ident = tokens.verify(token(keys, name=None), settings(keys), now=NOW)
    assert ident.dn == "/CN=a1b2-c3/CN=nickname:jdoe"


def test_claims_cannot_forge_extra_dn_components(keys) -> None:
    tok = token(keys, name="Eve/OU=Robots/CN=pilot", preferred_username="x/CN=y")
    ident = tokens.verify(tok, settings(keys), now=NOW)
    assert ident.dn.count("/") == 2 and ident.dn.startswith("/CN=Eve Ou=robots Cn=pilot/CN=nickname:")


def test_user_name_of_token_dns() -> None:
    # S25 clean_user_id drops /CN=nickname:..., so a token user is the same person as their certificate
    assert user_name("/CN=Jane Doe/CN=nickname:jdoe") == "Jane Doe"
    assert user_name("/DC=org/DC=pandawms/OU=Users/CN=Jane Doe") == "Jane Doe"
    assert user_name("/CN=nickname:jdoe") == "jdoe"
    assert user_name("/CN=a1b2-c3") == "a1b2-c3"
    assert user_name("/CN=user-1") != user_name("/CN=user-2")  # S25 strips only " 12" and "_12"
    assert user_name("/DC=org/CN=Jane Doe_12/CN=98765") == "Jane Doe"


def test_es256_and_leeway(keys) -> None:
    tok = token(keys, key="ec", issuer="https://ec.example.org")
    assert jwt.get_unverified_header(tok)["alg"] == "ES256"
    s = settings(keys)
    # expired 59 s ago: within the default 60 s leeway; 61 s: refused
    assert tokens.verify(tok, s, now=NOW + dt.timedelta(seconds=3659)).subject == "a1b2-c3"
    assert refused(tok, s, NOW + dt.timedelta(seconds=3661)) == "token expired at 2026-03-01 13:00:00 UTC"
    assert tokens.verify(tok, settings(keys, token_leeway=0), now=NOW).dn


def test_audience_list_and_defaults(keys) -> None:
    s = settings(keys)
    assert tokens.accepted_audiences(s) == ("https://panda.example.org:25443", "pandaserver")
    for aud in (
        ["https://other.example.org", "https://panda.example.org:25443/"],
        "https://panda.example.org:25443",
    ):
        assert tokens.verify(token(keys, audience=aud), s, now=NOW).subject == "a1b2-c3"
    configured = settings(keys, token_audiences=("https://panda.cern.ch",))
    assert tokens.verify(token(keys, audience=["x", "https://panda.cern.ch"]), configured, now=NOW)
    text = refused(token(keys), configured)  # "pandaserver" is only a default
    assert text == "token audience 'pandaserver' not accepted (expected one of https://panda.cern.ch)"


def test_jwks_file_and_kid(keys) -> None:
    s = settings(keys, token_issuers=(f"{ISS}={keys['jwks']}",))
    plain = token(keys)  # no kid: every key of the issuer is tried
    assert tokens.verify(plain, s, now=NOW).subject == "a1b2-c3"
    key = serialization.load_pem_private_key(keys["rsa"].read_bytes(), None)
    claims = jwt.decode(plain, options={"verify_signature": False})
    assert tokens.verify(jwt.encode(claims, key, "RS256", headers={"kid": "k1"}), s, now=NOW)
    wrong_kid = jwt.encode(claims, key, "RS256", headers={"kid": "k2"})
    assert refused(wrong_kid, s) == "token signature does not verify"


def test_keys_are_loaded_once_per_configuration(keys, tmp_path) -> None:
    pub = tmp_path / "pub.pem"
    pub.write_bytes(keys["rsa_pub"].read_bytes())
    s = settings(keys, token_issuers=(f"{ISS}={pub}",))
    assert tokens.verify(token(keys), s, now=NOW)
    pub.unlink()  # cached: a rotation needs a restart (docs/tokens.md)
    assert tokens.verify(token(keys), s, now=NOW)


# ---------------------------------------------------------------- refused tokens


def test_expired_and_not_yet_valid(keys) -> None:
    s = settings(keys)
    assert refused(token(keys, lifetime=60), s, NOW + dt.timedelta(hours=2)).startswith(
        "token expired at 2026-03-01 12:01:00"
    )
    early = token(keys, now=NOW + dt.timedelta(hours=1))
    assert refused(early, s).startswith("token not valid before 2026-03-01 13:00:00")
    iat_future = token(keys, extra={"nbf": None, "iat": int(NOW.timestamp()) + 600})
    assert refused(iat_future, s).startswith("token issued in the future")
    nan_exp = token(keys, extra={"exp": float("nan")})
    assert refused(nan_exp, s) == "malformed token (exp is not a valid time)"


def test_untrusted_issuer_and_forged_signature(keys) -> None:
    s = settings(keys)
    assert refused(token(keys, issuer="https://evil.example.org"), s) == (
        "token issuer 'https://evil.example.org' not trusted"
    )
    forged = token(keys, key="foreign")  # right issuer name, another key
    assert refused(forged, s) == "token signature does not verify"
    good = token(keys)
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["wlcg.groups"] = ["/atlas/production"]  # tampered claims, original signature
    assert (
        refused(f"{head}.{_b64(json.dumps(claims).encode())}.{sig}", s) == "token signature does not verify"
    )
    ec_as_rsa_issuer = token(keys, key="ec")  # ES256 but the issuer only has an RSA key
    assert refused(ec_as_rsa_issuer, s) == "token signature does not verify"


def test_alg_none_and_hmac_confusion(keys) -> None:
    s = settings(keys)
    claims = jwt.decode(token(keys), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert refused(unsigned, s) == "token algorithm 'none' not allowed (accepted: RS256, ES256)"
    # HS256 with the issuer's public key PEM as the HMAC secret (the classic confusion attack)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    mac = hmac.new(keys["rsa_pub"].read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    assert (
        refused(f"{signing_input}.{_b64(mac)}", s)
        == "token algorithm 'HS256' not allowed (accepted: RS256, ES256)"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"exp": None}, "token has no expiry (exp)"),
        ({"sub": None}, "token has no subject (sub)"),
        ({"sub": ""}, "token has no subject (sub)"),
        ({"aud": None}, "token has no audience (aud)"),
        ({"aud": []}, "token has no audience (aud)"),
        ({"exp": "tomorrow"}, "malformed token (exp is not a valid time)"),
        ({"wlcg.ver": "2.0"}, "token wlcg.ver '2.0' not supported (expected 1.0)"),
        ({"wlcg.groups": "/atlas"}, "malformed token (wlcg.groups is not a list of strings)"),
        ({"scope": ["a"]}, "malformed token (scope is not a string)"),
    ],
)
def test_missing_or_bad_claims(keys, extra, message) -> None:
    assert refused(token(keys, extra=extra), settings(keys)) == message


@pytest.mark.parametrize("bad", ["abc", "a.b", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "...."])
def test_malformed_tokens(keys, bad) -> None:
    assert refused(bad, settings(keys)).startswith("malformed token")


def test_claims_must_be_an_object(keys) -> None:
    key = serialization.load_pem_private_key(keys["rsa"].read_bytes(), None)
    not_object = jwt.PyJWS().encode(b"[1, 2]", key, algorithm="RS256")
    assert refused(not_object, settings(keys)) == "malformed token (claims are not a JSON object)"


def test_oversize_token(keys) -> None:
    huge = token(keys, extra={"padding": "x" * tokens.MAX_TOKEN_BYTES})
    assert refused(huge, settings(keys)).startswith("token too large")


def test_broken_issuer_file_locks_out_only_that_issuer(keys, tmp_path) -> None:
    s = settings(
        keys, token_issuers=(f"{ISS}={tmp_path / 'missing.pem'}", f"https://ec.example.org={keys['ec_pub']}")
    )
    assert (
        refused(token(keys), s)
        == f"token issuer '{ISS}' has no usable key on this server (see the server log)"
    )
    assert tokens.verify(token(keys, key="ec", issuer="https://ec.example.org"), s, now=NOW)
    with pytest.raises(ValueError, match="missing.pem"):
        tokens.load_issuers(s.token_issuers)
    with pytest.raises(ValueError, match="ISSUER=PUBLIC_KEY_FILE"):
        tokens.load_issuers(["no-equals-sign"])


# ---------------------------------------------------------------- the Authorization header


def test_bearer_token_header() -> None:
    assert tokens.bearer_token(None) is None
    assert tokens.bearer_token("  ") is None
    assert tokens.bearer_token("Bearer abc.def-_.g~+/h==") == "abc.def-_.g~+/h=="
    assert tokens.bearer_token("bearer   x.y.z ") == "x.y.z"
    assert tokens.bearer_token("BEARER x") == "x"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Basic dXNlcjpwYXNz", "unsupported Authorization scheme 'Basic' (expected Bearer)"),
        ("x.y.z", "unsupported Authorization scheme (expected Bearer)"),  # scheme forgotten: not echoed
        ("Bearer", "malformed Authorization header (expected 'Bearer <token>')"),
        ("Bearer a b", "malformed Authorization header (expected 'Bearer <token>')"),
        ("Bearer a,b", "malformed Authorization header (expected 'Bearer <token>')"),
        ("Bearer " + "x" * 20000, "Authorization header too large (20007 bytes, limit 16384)"),
    ],
)
def test_bad_authorization_headers(header, message) -> None:
    with pytest.raises(TokenError) as info:
        tokens.bearer_token(header)
    assert str(info.value) == message


# ---------------------------------------------------------------- groups and scopes


@pytest.mark.parametrize(
    ("group", "fqan"),
    [
        ("/atlas", "/atlas"),
        ("/atlas/pilot", "/atlas/Role=pilot"),
        ("/atlas/production", "/atlas/Role=production"),
        ("/atlas/Role=pilot", "/atlas/Role=pilot"),
        ("/atlas/de", "/atlas/de"),
        ("/atlas/phys-higgs/production", "/atlas/phys-higgs/production"),  # subgroups grant no role
        ("atlas/pilot", "/atlas/Role=pilot"),  # INDIGO IAM `groups` style, no leading slash
        ("/pilot", "/pilot"),  # a VO called pilot, not a role
    ],
)
def test_group_fqan(group, fqan) -> None:
    assert tokens.group_fqan(group) == fqan


def test_scope_mapping_and_groups_claim(keys) -> None:
    s = settings(
        keys, token_scope_fqans=("panda:pilot=/atlas/Role=pilot", "panda:prod=/atlas/Role=production")
    )
    ident = tokens.verify(
        token(keys, groups=["/atlas"], scope="openid panda:pilot offline_access"), s, now=NOW
    )
    assert ident.fqans == ("/atlas", "/atlas/Role=pilot")
    ident = tokens.verify(token(keys, groups=["/atlas/Role=pilot"], scope="panda:pilot"), s, now=NOW)
    assert ident.fqans == ("/atlas/Role=pilot",)  # no duplicates
    unmapped = tokens.verify(token(keys, groups=[], scope="panda:pilot"), settings(keys), now=NOW)
    assert unmapped.fqans == ()
    iam = tokens.verify(token(keys, groups=[], extra={"groups": ["atlas", "atlas/production"]}), s, now=NOW)
    assert iam.fqans == ("/atlas", "/atlas/Role=production")
