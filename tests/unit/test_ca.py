"""panda_server.ca with real crypto: files, modes, openssl verification, an mTLS handshake, the CLI."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from panda_server import ca
from panda_server.settings import Settings

# One PKI per module: RSA key generation dominates the run time
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ca.PkiPaths:
    return ca.create_pki(tmp_path_factory.mktemp("pki") / "var" / "pki")


@pytest.fixture(scope="module")
def foreign_pki(tmp_path_factory: pytest.TempPathFactory) -> ca.PkiPaths:
    """A second PKI with identical DNs but its own CA, which the first one must not trust."""
    return ca.create_pki(tmp_path_factory.mktemp("foreign"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)


def _leaf_file(proxy_file: Path, out: Path) -> Path:
    out.write_bytes(ca.load_credential(proxy_file).cert.public_bytes(Encoding.PEM))
    return out


# ---------------------------------------------------------------- names


def test_dn_round_trip_keeps_order() -> None:
    dn = "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
    name = ca.dn_to_name(dn)
    assert [a.oid for a in name] == [NameOID.DOMAIN_COMPONENT] * 2 + [
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
    ]
    assert ca.name_to_dn(name) == dn
    # Slashes inside a value, as in grid service DNs
    assert ca.name_to_dn(ca.dn_to_name("/CN=host/panda.example.org")) == "/CN=host/panda.example.org"


@pytest.mark.parametrize("bad", ["CN=x", "/XX=y", "/CN=", "/", "//CN=x"])
def test_dn_syntax_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        ca.dn_to_name(bad)


# ---------------------------------------------------------------- files and openssl


def test_create_pki_layout_and_modes(pki: ca.PkiPaths) -> None:
    public = [pki.ca_cert, pki.hostcert, pki.usercert, pki.pilotcert]
    secret = [pki.ca_key, pki.hostkey, pki.userkey, pki.pilotkey, pki.user_proxy, pki.pilot_proxy]
    for path in public:
        assert _mode(path) == 0o644, path
    for path in secret:
        assert _mode(path) == 0o600, path
    assert _mode(pki.ca_dir) == 0o755
    assert _mode(pki.ca_key.parent) == 0o700
    hashed = [p for p in pki.ca_dir.iterdir() if p.name != "ca.pem"]
    assert len(hashed) == 1 and _mode(hashed[0]) == 0o644
    assert hashed[0].name == _openssl("x509", "-hash", "-noout", "-in", pki.ca_cert).stdout.strip() + ".0"
    assert not list(pki.root.rglob(".*"))  # no temp files left behind


def test_subjects_and_extensions(pki: ca.PkiPaths) -> None:
    host = x509.load_pem_x509_certificate(pki.hostcert.read_bytes())
    assert ca.name_to_dn(host.subject) == "/DC=org/DC=pandawms/OU=Hosts/CN=localhost"
    sans = host.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    user = x509.load_pem_x509_certificate(pki.usercert.read_bytes())
    assert ca.name_to_dn(user.subject) == ca.DEFAULT_USER_DN
    assert not user.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    user.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    user.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    pilot = ca.load_credential(pki.pilot_proxy)
    assert ca.name_to_dn(pilot.chain[0].subject) == ca.DEFAULT_PILOT_DN


def test_openssl_verifies_host_cert_via_capath(pki: ca.PkiPaths) -> None:
    result = _openssl("verify", "-CApath", pki.ca_dir, "-purpose", "sslserver", pki.hostcert)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openssl_verifies_proxy_only_when_allowed(pki: ca.PkiPaths, tmp_path: Path) -> None:
    leaf = _leaf_file(pki.user_proxy, tmp_path / "proxy.pem")
    ok = _openssl("verify", "-CApath", pki.ca_dir, "-allow_proxy_certs", "-untrusted", pki.usercert, leaf)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    refused = _openssl("verify", "-CApath", pki.ca_dir, "-untrusted", pki.usercert, leaf)
    assert refused.returncode != 0
    assert "proxy certificates not allowed" in refused.stdout + refused.stderr
    text = _openssl("x509", "-noout", "-text", "-in", leaf).stdout
    assert "Proxy Certificate Information" in text


def test_proxy_structure(pki: ca.PkiPaths) -> None:
    proxy = ca.load_credential(pki.user_proxy)
    user = x509.load_pem_x509_certificate(pki.usercert.read_bytes())
    assert proxy.chain == (user,)
    assert proxy.cert.issuer == user.subject
    assert list(proxy.cert.subject)[:-1] == list(user.subject)
    assert list(proxy.cert.subject)[-1].value.isdigit()
    ext = proxy.cert.extensions.get_extension_for_oid(ca.PROXY_CERT_INFO_OID)
    assert ext.critical
    assert ca.proxy_policy(proxy.cert) == ca.POLICY_INHERIT_ALL
    assert ca.proxy_policy(user) is None
    assert proxy.cert.extensions.get_extension_for_class(x509.KeyUsage).critical


def test_limited_proxy_and_proxy_of_proxy(pki: ca.PkiPaths, tmp_path: Path) -> None:
    user = ca.load_credential(pki.usercert, pki.userkey)
    limited = ca.make_proxy(user, hours=1, limited=True)
    assert ca.proxy_policy(limited.cert) == ca.POLICY_LIMITED
    der = limited.cert.extensions.get_extension_for_oid(ca.PROXY_CERT_INFO_OID).value.value
    assert bytes.fromhex("2b060104019b5001010109") in der  # 1.3.6.1.4.1.3536.1.1.1.9 encoded
    second = ca.make_proxy(limited, hours=100)
    assert second.chain == (limited.cert, user.cert)
    assert second.cert.not_valid_after_utc <= limited.cert.not_valid_after_utc  # capped by its signer
    ca.write_proxy_file(second, tmp_path / "x509up")
    leaf = _leaf_file(tmp_path / "x509up", tmp_path / "leaf.pem")
    untrusted = tmp_path / "chain.pem"
    untrusted.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in second.chain))
    ok = _openssl("verify", "-CApath", pki.ca_dir, "-allow_proxy_certs", "-untrusted", untrusted, leaf)
    assert ok.returncode == 0, ok.stdout + ok.stderr


# ---------------------------------------------------------------- mutual TLS


def _serve_once(pki: ca.PkiPaths, listener: socket.socket, result: dict) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.hostcert, pki.hostkey)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(capath=str(pki.ca_dir))
    ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
    try:
        conn, _ = listener.accept()
        conn.settimeout(10)
        with ctx.wrap_socket(conn, server_side=True) as tls:
            result["subject"] = tls.getpeercert()["subject"]
            tls.sendall(b"hello\n")
    except (OSError, ssl.SSLError) as exc:
        result["error"] = exc


def _handshake(pki: ca.PkiPaths, client_proxy: Path) -> tuple[dict, bytes | Exception]:
    """Run one server handshake in a thread; return what the server saw and what the client read."""
    result: dict = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        thread = threading.Thread(target=_serve_once, args=(pki, listener, result), daemon=True)
        thread.start()
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.load_verify_locations(capath=str(pki.ca_dir))
        client_ctx.load_cert_chain(certfile=client_proxy, keyfile=client_proxy)
        got: bytes | Exception
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw:
                with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    # With TLS 1.3 a refused client cert only shows up on the first read
                    got = tls.recv(100)
        except (OSError, ssl.SSLError) as exc:
            got = exc
        thread.join(timeout=15)
        assert not thread.is_alive()
    return result, got


def test_tls_handshake_with_user_proxy(pki: ca.PkiPaths) -> None:
    result, got = _handshake(pki, pki.user_proxy)
    assert "error" not in result, result
    assert got == b"hello\n"
    rdns = [dict(rdn) for rdn in result["subject"]]
    assert rdns[-1]["commonName"].isdigit()
    assert rdns[-2]["commonName"] == "Jane Doe"


def test_tls_refuses_proxy_from_untrusted_ca(pki: ca.PkiPaths, foreign_pki: ca.PkiPaths) -> None:
    result, got = _handshake(pki, foreign_pki.user_proxy)
    assert "subject" not in result
    assert isinstance(result.get("error"), ssl.SSLError)
    assert isinstance(got, Exception) or got == b""


# ---------------------------------------------------------------- idempotence


def test_create_pki_is_idempotent(tmp_path: Path) -> None:
    first = ca.create_pki(tmp_path)
    cert_before = x509.load_pem_x509_certificate(first.ca_cert.read_bytes())
    stats = {p: p.stat().st_mtime_ns for p in [first.ca_cert, first.ca_key, first.hostcert, first.user_proxy]}
    second = ca.create_pki(tmp_path)
    assert second == first
    assert (
        x509.load_pem_x509_certificate(second.ca_cert.read_bytes()).serial_number == cert_before.serial_number
    )
    assert {p: p.stat().st_mtime_ns for p in stats} == stats  # nothing rewritten


def test_create_pki_remints_short_proxy_and_force_replaces_ca(tmp_path: Path) -> None:
    paths = ca.create_pki(tmp_path, proxy_hours=0.5)  # below the one-hour renewal margin
    old_proxy = paths.user_proxy.read_bytes()
    old_ca = paths.ca_cert.read_bytes()
    ca.create_pki(tmp_path)
    assert paths.user_proxy.read_bytes() != old_proxy
    assert paths.ca_cert.read_bytes() == old_ca
    old_hash_files = {p.name for p in paths.ca_dir.iterdir()}
    ca.create_pki(tmp_path, force=True, ca_dn="/DC=org/DC=pandawms/CN=Another CA")
    assert paths.ca_cert.read_bytes() != old_ca
    new_hash_files = {p.name for p in paths.ca_dir.iterdir()}
    assert len(new_hash_files) == 2 and new_hash_files != old_hash_files  # stale CA hash removed
    result = _openssl("verify", "-CApath", paths.ca_dir, paths.usercert)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- CLI


def test_cli_init_proxy_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki_dir = tmp_path / "pki"
    assert ca.main(["init", "--dir", str(pki_dir), "--host", "panda.local", "--host", "10.0.0.1"]) == 0
    out = capsys.readouterr().out
    assert "/DC=org/DC=pandawms/OU=Hosts/CN=panda.local" in out and "PRIVATE KEY" not in out
    proxy_file = tmp_path / "limited.proxy"
    args = ["proxy", "--dir", str(pki_dir), "--out", str(proxy_file), "--hours", "2", "--limited"]
    assert ca.main(args) == 0
    assert _mode(proxy_file) == 0o600
    capsys.readouterr()
    assert ca.main(["show", str(proxy_file)]) == 0
    out = capsys.readouterr().out
    assert "subject:   /DC=org/DC=pandawms/OU=Users/CN=Jane Doe/CN=" in out
    assert "limited" in out and f"identity:  {ca.DEFAULT_USER_DN}" in out


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.pem"
    argv = ["proxy", "--cert", str(missing), "--key", str(missing), "--out", str(tmp_path / "x")]
    assert ca.main(argv) == 2
    err = capsys.readouterr().err
    assert "nope.pem" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert ca.main(["init", "--dir", str(tmp_path / "p"), "--user-dn", "CN=x"]) == 2
    assert "must start with '/'" in capsys.readouterr().err
    assert ca.main(["init", "--dir", str(tmp_path / "p"), "--pilot-dn", "/FOO=bar"]) == 2
    assert "unknown DN attribute 'FOO'" in capsys.readouterr().err
    assert ca.main(["show", str(missing)]) == 2
    assert ca.main(["bogus"]) == 2


def test_default_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PANDA_PKI_DIR", str(tmp_path / "env"))
    assert ca.default_pki_dir() == tmp_path / "env"
    monkeypatch.delenv("PANDA_PKI_DIR")
    monkeypatch.chdir(tmp_path)  # the default follows the server's Settings, not the working directory
    assert ca.default_pki_dir() == Settings().pki_dir
