"""Fixtures of the wire tests: sessions presenting the test credentials, and extra credentials
minted with panda_server.ca (a second user of the trusted CA, a limited proxy, an untrusted CA)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from panda_server import ca, pki_voms
from tests.wire.helpers import OTHER_DN


def _trusted_authority(pki) -> ca.Authority:
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    return ca.Authority(cert, key)


@pytest.fixture(scope="session")
def extra_creds(workdir, pki):
    """Proxy files: another user (same CA), Jane's RFC 3820 limited proxy, an untrusted CA's user.

    Proxies that should pass the VO check carry a VOMS AC of the test PKI's VOMS server (/atlas)."""
    base = workdir / "wire-creds"
    base.mkdir(exist_ok=True)
    trusted = _trusted_authority(pki)
    other = trusted.issue(OTHER_DN, kind="user")
    jane = ca.load_credential(pki.usercert, pki.userkey)
    evil_ca = ca.Authority.create("/DC=org/DC=evil/CN=Evil CA")
    evil_user = evil_ca.issue("/DC=org/DC=pandawms/OU=Users/CN=Jane Doe", kind="user")
    paths = {
        "other": base / "other.proxy",
        "limited": base / "limited.proxy",
        "from_limited": base / "from-limited.proxy",
        "full": base / "full.proxy",
        "pilot_limited": base / "pilot-limited.proxy",
        "untrusted": base / "untrusted.proxy",
        "untrusted_cert": base / "untrusted-cert.pem",
        "untrusted_key": base / "untrusted-key.pem",
    }
    voms = ca.load_credential(pki.vomscert, pki.vomskey)

    def voms_proxy(owner, *fqans, limited=False):
        return pki_voms.make_voms_proxy(owner, voms, vo=ca.VO, fqans=fqans or ("/atlas",), uri=ca.VOMS_URI,
                                        limited=limited)  # fmt: skip

    ca.write_proxy_file(voms_proxy(other), paths["other"])
    limited = voms_proxy(jane, limited=True)
    ca.write_proxy_file(limited, paths["limited"])
    ca.write_proxy_file(ca.make_proxy(limited), paths["from_limited"])  # Globus: limited as well
    ca.write_proxy_file(voms_proxy(jane), paths["full"])
    robot = ca.load_credential(pki.pilotcert, pki.pilotkey)
    ca.write_proxy_file(voms_proxy(robot, "/atlas/Role=pilot", limited=True), paths["pilot_limited"])
    ca.write_proxy_file(ca.make_proxy(evil_user), paths["untrusted"])
    ca.write_credential(evil_user, paths["untrusted_cert"], paths["untrusted_key"])
    return paths


@pytest.fixture
def user(live):
    """Jane Doe's proxy: an ordinary user (no pilot or production role)."""
    with live.session(live.pki.user_proxy) as s:
        yield s


@pytest.fixture
def pilot(live):
    """The pilot's proxy: pilot role through its VOMS attribute /atlas/Role=pilot."""
    with live.session(live.pki.pilot_proxy) as s:
        yield s


@pytest.fixture
def other(live, extra_creds):
    """John Smith: another ordinary user of the same CA."""
    with live.session(extra_creds["other"]) as s:
        yield s


@pytest.fixture
def anonymous(live):
    """HTTPS without a client certificate."""
    with live.session(None) as s:
        yield s
