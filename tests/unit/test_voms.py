"""VOMS attribute certificates: what panda-ca mints, what voms-proxy-fake mints, and every way an AC
must be refused (forged, altered, untrusted server, expired, pasted into another proxy, wrong VO).

The cross-checks with the real VOMS clients (voms-proxy-fake 2.1 makes an AC that we read;
voms-proxy-info reads ours) need the voms-clients package; scripts/system-deps.sh installs it, so
under CI a missing binary is a failure, not a skip."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess

import pytest
from cryptography import x509

from panda_server import ca, pki_voms
from panda_server.protocol import voms


def _need(binary):
    if shutil.which(binary) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} is missing in CI; scripts/system-deps.sh should install voms-clients")
        pytest.skip(f"{binary} not installed (apt-get install voms-clients)")


def now():
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    base = tmp_path_factory.mktemp("voms")
    paths = ca.create_pki(base / "pki")
    creds = {
        "user": ca.load_credential(paths.usercert, paths.userkey),
        "voms": ca.load_credential(paths.vomscert, paths.vomskey),
        "authority": ca.Authority(
            x509.load_pem_x509_certificate(paths.ca_cert.read_bytes()),
            ca.load_credential(paths.ca_cert, paths.ca_key).key,
        ),
    }
    return base, paths, creds


def trusted(paths):
    return voms.load_vomsdir(paths.voms_dir)


def chain_of(cred):
    return [cred.cert, *cred.chain]


def proxy_with(owner, server, fqans=("/atlas",), **kw):
    return pki_voms.make_voms_proxy(owner, server, vo="atlas", fqans=fqans, uri=ca.VOMS_URI, **kw)


def test_panda_ca_proxies_carry_verified_fqans(pkis):
    _, paths, _ = pkis
    expected = {
        paths.user_proxy: ("/atlas",),
        paths.production_proxy: ("/atlas/Role=production", "/atlas"),
        paths.pilot_proxy: ("/atlas/Role=pilot", "/atlas"),
    }
    for path, fqans in expected.items():
        got, until = voms.chain_fqans(ca.load_certs(path), trusted(paths), now())
        assert got == fqans
        assert until > now() + dt.timedelta(hours=1)


def test_panda_ca_init_keeps_valid_voms_proxies_and_remints_plain_ones(pkis):
    base, paths, _ = pkis
    before = paths.pilot_proxy.read_bytes()
    user = ca.load_credential(paths.usercert, paths.userkey)
    ca.write_proxy_file(ca.make_proxy(user), paths.user_proxy)  # an old, VOMS-less proxy
    ca.create_pki(base / "pki")
    assert paths.pilot_proxy.read_bytes() == before
    got, _ = voms.chain_fqans(ca.load_certs(paths.user_proxy), trusted(paths), now())
    assert got == ("/atlas",)


def test_a_proxy_without_voms_has_no_fqans(pkis):
    _, paths, creds = pkis
    assert voms.chain_fqans(chain_of(ca.make_proxy(creds["user"])), trusted(paths), now()) == ((), None)


def test_a_proxy_delegated_from_a_voms_proxy_keeps_its_fqans(pkis):
    _, paths, creds = pkis
    delegated = ca.make_proxy(proxy_with(creds["user"], creds["voms"], ("/atlas/Role=production",)))
    assert voms.chain_fqans(chain_of(delegated), trusted(paths), now())[0] == ("/atlas/Role=production",)


def test_forged_ac_signed_by_another_key_with_the_voms_servers_name(pkis):
    _, paths, creds = pkis
    impostor = creds["authority"].issue(ca.VOMS_DN, kind="host")  # same DN, different key
    forged = proxy_with(creds["user"], impostor, ("/atlas/Role=production",))
    with pytest.raises(voms.VomsError, match="not signed by the VOMS server"):
        voms.chain_fqans(chain_of(forged), trusted(paths), now())


def test_altered_fqan_breaks_the_signature(pkis):
    _, paths, creds = pkis
    good = proxy_with(creds["user"], creds["voms"], ("/atlas/Role=pilox",))
    ext = good.cert.extensions.get_extension_for_oid(voms.VOMS_AC_OID).value.value
    altered = ext.replace(b"/atlas/Role=pilox", b"/atlas/Role=pilot")
    assert altered != ext
    cert = ca.make_proxy(creds["user"], extensions=[x509.UnrecognizedExtension(voms.VOMS_AC_OID, altered)])
    with pytest.raises(voms.VomsError, match="forged or altered"):
        voms.chain_fqans(chain_of(cert), trusted(paths), now())


def test_ac_from_an_untrusted_voms_server(pkis):
    _, paths, creds = pkis
    other = creds["authority"].issue("/DC=org/DC=pandawms/OU=Hosts/CN=voms.elsewhere", kind="host")
    proxy = proxy_with(creds["user"], other, ("/atlas/Role=production",))
    with pytest.raises(voms.VomsError, match="not trusted for VO atlas"):
        voms.chain_fqans(chain_of(proxy), trusted(paths), now())


def test_ac_for_a_vo_the_server_has_no_voms_server_for(pkis):
    _, paths, creds = pkis
    proxy = pki_voms.make_voms_proxy(creds["user"], creds["voms"], vo="cms", fqans=("/cms",), uri="x:1")
    with pytest.raises(voms.VomsError, match="not trusted for VO cms"):
        voms.chain_fqans(chain_of(proxy), trusted(paths), now())


def test_expired_and_not_yet_valid_acs(pkis):
    _, paths, creds = pkis
    holder = creds["user"].cert
    for start, text in (
        (now() - dt.timedelta(hours=3), "not now"),
        (now() + dt.timedelta(hours=1), "not now"),
    ):
        ac = pki_voms.make_ac(holder, creds["voms"], vo="atlas", fqans=["/atlas"], uri="u:1", hours=2,
                              not_before=start)  # fmt: skip
        proxy = ca.make_proxy(creds["user"], extensions=[pki_voms.voms_extension([ac])])
        with pytest.raises(voms.VomsError, match=text):
            voms.chain_fqans(chain_of(proxy), trusted(paths), now())


def test_an_ac_pasted_into_another_users_proxy(pkis):
    _, paths, creds = pkis
    jane = proxy_with(creds["user"], creds["voms"], ("/atlas/Role=production",))
    john = creds["authority"].issue("/DC=org/DC=pandawms/OU=Users/CN=John Smith", kind="user")
    ext = jane.cert.extensions.get_extension_for_oid(voms.VOMS_AC_OID).value
    stolen = ca.make_proxy(john, extensions=[ext])
    with pytest.raises(voms.VomsError, match="issued to .*Jane Doe, not to this certificate's owner .*John"):
        voms.chain_fqans(chain_of(stolen), trusted(paths), now())


def test_fqan_of_another_vo_inside_an_atlas_ac(pkis):
    _, paths, creds = pkis
    proxy = proxy_with(creds["user"], creds["voms"], ("/atlas", "/cms/Role=production"))
    with pytest.raises(voms.VomsError, match="does not belong to VO atlas"):
        voms.chain_fqans(chain_of(proxy), trusted(paths), now())


@pytest.mark.parametrize(
    "garbage", [b"", b"\x30\x03\x02\x01\x01", b"\x30\x80" + b"\x00" * 40, os.urandom(64)]
)
def test_unreadable_voms_extension(pkis, garbage):
    _, paths, creds = pkis
    cert = ca.make_proxy(creds["user"], extensions=[x509.UnrecognizedExtension(voms.VOMS_AC_OID, garbage)])
    with pytest.raises(voms.VomsError):
        voms.chain_fqans(chain_of(cert), trusted(paths), now())


def test_an_expired_voms_server_certificate_is_not_trusted(pkis, tmp_path):
    _, paths, creds = pkis
    proxy = proxy_with(creds["user"], creds["voms"])
    later = creds["voms"].cert.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(voms.VomsError, match="not valid now"):
        voms.chain_fqans(chain_of(proxy), trusted(paths), later)


def _fake(paths, tmp_path, *extra, fqans=("/atlas/Role=production", "/atlas")):
    _need("voms-proxy-fake")
    out = tmp_path / "x509up_fake"
    cmd = ["voms-proxy-fake", "-certdir", str(paths.ca_dir), "-cert", str(paths.usercert),
           "-key", str(paths.userkey), "-hostcert", str(paths.vomscert), "-hostkey", str(paths.vomskey),
           "-voms", "atlas", "-uri", ca.VOMS_URI, *(a for f in fqans for a in ("-fqan", f)),
           "-rfc", "-hours", "2", *extra, "-out", str(out)]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert proc.returncode == 0, proc.stderr
    return ca.load_certs(out)


@pytest.mark.parametrize("fmt", [(), ("-newformat",)], ids=["holder-subject", "holder-issuer-newformat"])
def test_voms_proxy_fake_acs_are_read_and_verified(pkis, tmp_path, fmt):
    _, paths, _ = pkis
    fqans, until = voms.chain_fqans(_fake(paths, tmp_path, *fmt), trusted(paths), now())
    assert fqans == ("/atlas/Role=production", "/atlas")
    assert dt.timedelta(hours=1) < until - now() <= dt.timedelta(hours=2, minutes=1)


def test_an_ac_restricted_to_other_targets_is_refused(pkis, tmp_path):
    """voms-proxy-fake -target writes a critical targetInformation extension we do not implement.
    (voms-proxy-fake 2.1.1 crashes with -target and any FQAN but the bare VO, hence /atlas.)"""
    _, paths, _ = pkis
    chain = _fake(paths, tmp_path, "-target", "other.example.org", fqans=("/atlas",))
    with pytest.raises(voms.VomsError, match="critical extension 2.5.29.55"):
        voms.chain_fqans(chain, trusted(paths), now())


def test_an_ac_valid_from_a_few_seconds_ahead_is_accepted(pkis):
    """Clock skew between the VOMS server and us: 60 s of leeway on notBefore, none on notAfter."""
    _, paths, creds = pkis
    ac = pki_voms.make_ac(creds["user"].cert, creds["voms"], vo="atlas", fqans=["/atlas"], uri="u:1", hours=1,
                          not_before=now() + dt.timedelta(seconds=20))  # fmt: skip
    proxy = ca.make_proxy(creds["user"], extensions=[pki_voms.voms_extension([ac])])
    assert voms.chain_fqans(chain_of(proxy), trusted(paths), now())[0] == ("/atlas",)


def test_voms_proxy_info_reads_panda_ca_acs(pkis, tmp_path):
    _need("voms-proxy-info")
    _, paths, _ = pkis
    env = {**os.environ, "X509_CERT_DIR": str(paths.ca_dir), "X509_VOMS_DIR": str(paths.voms_dir),
           "HOME": str(tmp_path)}  # fmt: skip
    proc = subprocess.run(["voms-proxy-info", "-all", "-file", str(paths.production_proxy)], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "attribute : /atlas/Role=production" in proc.stdout
    assert "identity  : /DC=org/DC=pandawms/OU=Users/CN=Jane Doe" in proc.stdout
    assert f"uri       : {ca.VOMS_URI}" in proc.stdout


def test_panda_ca_proxy_with_fqans(pkis, tmp_path):
    _, paths, _ = pkis
    out = tmp_path / "prod.proxy"
    rc = ca.main(["proxy", "--dir", str(paths.root), "--fqan", "/atlas/Role=production", "--out", str(out)])
    assert rc == 0
    assert voms.chain_fqans(ca.load_certs(out), trusted(paths), now())[0] == ("/atlas/Role=production",)
    assert (
        ca.main(["proxy", "--dir", str(paths.root), "--fqan", "/cms", "--fqan", "/atlas", "--out", str(out)])
        == 2
    )
