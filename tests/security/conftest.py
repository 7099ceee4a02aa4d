"""Credentials of the attack suite, minted at test time with the test PKI's CA, VOMS server and
token issuer — and with impostors of each (another CA, another VOMS key, another issuer key)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from panda_server import ca, pki, pki_voms, tokens
from tests.wire.helpers import OTHER_DN, USER_DN


@dataclasses.dataclass(frozen=True)
class AttackCreds:
    files: dict[str, Path]  # name → proxy/cert+key file for requests' cert=
    tokens: dict[str, str]  # name → bearer token


def _authority(paths: ca.PkiPaths) -> ca.Authority:
    cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    return ca.Authority(cert, ca.load_credential(paths.ca_cert, paths.ca_key).key)


def _expired_user(authority: ca.Authority) -> ca.Credential:
    """A user certificate of the trusted CA that expired an hour ago."""
    key = pki._new_key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(ca.dn_to_name(USER_DN))
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now - dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return ca.Credential(cert, key)


def _cert_and_key(cred: ca.Credential, path: Path) -> Path:
    pem = ca.cert_pem(cred.cert) + ca.key_pem(cred.key, serialization.PrivateFormat.PKCS8)
    ca.write_file(path, pem, 0o600)
    return path


@pytest.fixture(scope="session")
def attack(workdir, pki):
    base = workdir / "attack-creds"
    base.mkdir(exist_ok=True)
    authority = _authority(pki)
    jane = ca.load_credential(pki.usercert, pki.userkey)
    john = authority.issue(OTHER_DN, kind="user")
    voms = ca.load_credential(pki.vomscert, pki.vomskey)
    impostor_voms = authority.issue(ca.VOMS_DN, kind="host")  # the VOMS server's name, another key
    foreign_voms = authority.issue("/DC=org/DC=pandawms/OU=Hosts/CN=voms.elsewhere", kind="host")
    evil_ca = ca.Authority.create("/DC=org/DC=evil/CN=Evil CA")

    def voms_proxy(owner, server, *fqans, **kw):
        return pki_voms.make_voms_proxy(owner, server, vo=ca.VO, fqans=fqans, uri=ca.VOMS_URI, **kw)

    jane_production = voms_proxy(jane, voms, "/atlas/Role=production", "/atlas")
    stolen = ca.make_proxy(john, extensions=[jane_production.cert.extensions.get_extension_for_oid(
        pki_voms.VOMS_AC_OID).value])  # fmt: skip
    proxies = {
        "untrusted_ca": ca.make_proxy(evil_ca.issue(USER_DN, kind="user")),
        "expiring_proxy": ca.make_proxy(jane, hours=2 / 3600),  # expired by the time it is used
        "limited": voms_proxy(jane, voms, "/atlas", limited=True),
        "forged_voms": voms_proxy(jane, impostor_voms, "/atlas/Role=production", "/atlas"),
        "untrusted_voms": voms_proxy(jane, foreign_voms, "/atlas/Role=production", "/atlas"),
        "stolen_ac": stolen,
        "no_voms": ca.make_proxy(jane),
        "john": voms_proxy(john, voms, "/atlas"),
    }
    files = {}
    for name, cred in proxies.items():
        files[name] = base / f"{name}.proxy"
        ca.write_proxy_file(cred, files[name])
    files["expired_cert"] = _cert_and_key(_expired_user(authority), base / "expired-cert.pem")
    other_issuer_key = base / "other-issuer-key.pem"
    ca.ensure_keypair(other_issuer_key, base / "other-issuer-pub.pem")
    user_claims = {"issuer": tokens.LOCAL_ISSUER, "subject": "jdoe", "name": "Jane Doe",
                   "preferred_username": "jdoe", "groups": ["/atlas", "/atlas/production"]}  # fmt: skip
    toks = {
        "expired": tokens.mint(
            pki.token_issuer_key,
            audience=tokens.DEFAULT_AUDIENCE,
            lifetime=60,
            now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
            **user_claims,
        ),  # fmt: skip
        "forged": tokens.mint(other_issuer_key, audience=tokens.DEFAULT_AUDIENCE, **user_claims),
        "wrong_audience": tokens.mint(
            pki.token_issuer_key, audience="https://elsewhere.example", **user_claims
        ),
        "good_user": tokens.mint(
            pki.token_issuer_key, audience=tokens.DEFAULT_AUDIENCE, **{**user_claims, "groups": ["/atlas"]}
        ),  # fmt: skip
    }
    return AttackCreds(files, toks)
