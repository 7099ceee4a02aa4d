"""Mint VOMS attribute certificates and VOMS proxies, as voms-proxy-init/voms-proxy-fake make them.

The AC is built byte for byte in the layout of VOMS 2 (checked against voms-proxy-fake and read
back by voms-proxy-info in tests/unit/test_voms.py): holder = the end-entity certificate's subject
DN and serial, issuer = the VOMS server's DN, sha256WithRSAEncryption, the FQAN attribute with
policyAuthority `<vo>://<uri>`, and the extensions VOMS adds (the server's certificate, noRevAvail,
authorityKeyIdentifier). Parsing and checking are in panda_server/protocol/voms.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from panda_server.pki import CLOCK_SKEW, Credential, make_proxy, utcnow
from panda_server.protocol.voms import VOMS_AC_OID, VOMS_CERTS_OID, end_entity

SHA256_RSA = "1.2.840.113549.1.1.11"
FQAN_ATTRIBUTE = "1.3.6.1.4.1.8005.100.100.4"
NO_REV_AVAIL = "2.5.29.56"
AUTHORITY_KEY_ID = "2.5.29.35"


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _int(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _gtime(when: dt.datetime) -> bytes:
    return _tlv(0x18, when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ").encode())


def _directory_names(name: x509.Name) -> bytes:
    """GeneralNames holding one directoryName ([4] EXPLICIT Name)."""
    return _seq(_tlv(0xA4, name.public_bytes()))


def _algorithm() -> bytes:
    return _seq(_oid(SHA256_RSA), b"\x05\x00")


def _extension(oid: str, value: bytes) -> bytes:
    return _seq(_oid(oid), _tlv(0x04, value))


def make_ac(
    holder: x509.Certificate,
    voms: Credential,
    *,
    vo: str,
    fqans: Sequence[str],
    uri: str,
    hours: float = 12,
    serial: int = 1,
    not_before: dt.datetime | None = None,
) -> bytes:
    """DER of one RFC 5755 AttributeCertificate for holder, signed by the VOMS server credential."""
    if not isinstance(voms.key, rsa.RSAPrivateKey):
        raise ValueError("the VOMS server key must be RSA")
    now = utcnow()
    start = not_before or now - CLOCK_SKEW
    end = (not_before or now) + dt.timedelta(hours=hours)
    values = b"".join(_tlv(0x04, f.encode()) for f in fqans)
    ietf = _seq(_tlv(0xA0, _tlv(0x86, f"{vo}://{uri}".encode())), _seq(values))
    attributes = _seq(_seq(_oid(FQAN_ATTRIBUTE), _tlv(0x31, ietf)))
    ski = voms.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    extensions = _seq(
        _extension(VOMS_CERTS_OID, _seq(_seq(voms.cert.public_bytes(serialization.Encoding.DER)))),
        _extension(NO_REV_AVAIL, b"\x05\x00"),
        _extension(AUTHORITY_KEY_ID, _seq(_tlv(0x80, ski))),
    )
    acinfo = _seq(
        _int(1),  # v2
        _seq(_tlv(0xA0, _directory_names(holder.subject) + _int(holder.serial_number))),  # baseCertificateID
        _tlv(0xA0, _directory_names(voms.cert.subject)),  # v2Form issuerName
        _algorithm(),
        _int(serial),
        _seq(_gtime(start), _gtime(end)),
        attributes,
        extensions,
    )
    signature = voms.key.sign(acinfo, padding.PKCS1v15(), hashes.SHA256())
    return _seq(acinfo, _algorithm(), _tlv(0x03, b"\x00" + signature))


def voms_extension(acs: Sequence[bytes]) -> x509.UnrecognizedExtension:
    """The proxy extension holding ACs: SEQUENCE OF SEQUENCE OF AttributeCertificate."""
    return x509.UnrecognizedExtension(VOMS_AC_OID, _seq(_seq(*acs)))


def make_voms_proxy(
    owner: Credential,
    voms: Credential,
    *,
    vo: str,
    fqans: Sequence[str],
    uri: str,
    hours: float = 12,
    limited: bool = False,
) -> Credential:
    """An RFC 3820 proxy of owner (a certificate or a proxy) carrying one AC for its end entity."""
    holder = end_entity((owner.cert, *owner.chain)) or owner.cert
    ac = make_ac(holder, voms, vo=vo, fqans=fqans, uri=uri, hours=hours)
    return make_proxy(owner, hours=hours, limited=limited, extensions=[voms_extension([ac])])
