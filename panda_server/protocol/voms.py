"""VOMS attribute certificates in grid proxies: find them, read the FQANs, check them.

A VOMS proxy carries, in the non-critical extension 1.3.6.1.4.1.8005.100.100.5 of a proxy
certificate, a SEQUENCE OF SEQUENCE OF RFC 5755 AttributeCertificate. Each AC is signed by a VOMS
server of one VO and holds the FQANs (`/atlas`, `/atlas/Role=production`) as an IetfAttrSyntax
attribute (OID ...100.100.4) whose policyAuthority is `<vo>://<host>:<port>`.

An AC is believed only if (reference/feasibility.md §5, DESIGN §5):
  * its signature verifies with the key of a configured VOMS server certificate of its VO
    (`<voms_dir>/<vo>/*.pem`) whose subject is the AC's issuer and which is itself valid now;
  * now is inside the AC's validity window;
  * its holder is the proxy chain's end-entity certificate (VOMS writes the holder's subject DN
    and serial number), so an AC cannot be pasted into somebody else's proxy;
  * every FQAN belongs to the AC's VO.
Anything else raises VomsError with a reason a person can act on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc5280, rfc5755

VOMS_AC_OID = x509.ObjectIdentifier("1.3.6.1.4.1.8005.100.100.5")
FQAN_ATTRIBUTE_OID = univ.ObjectIdentifier("1.3.6.1.4.1.8005.100.100.4")
VOMS_CERTS_OID = "1.3.6.1.4.1.8005.100.100.10"  # the issuing VOMS server's certificate chain
MAX_ACS = 16  # a proxy with more ACs than this is not a proxy anyone made on purpose
CLOCK_SKEW = dt.timedelta(seconds=60)  # an AC minted a moment ago on a host whose clock runs ahead
# AC extensions we understand; any other extension marked critical makes the AC unusable (RFC 5755
# §4.3: targetInformation, which restricts an AC to named services, is one we do not implement)
_KNOWN_EXTENSIONS = {VOMS_CERTS_OID, "2.5.29.56", "2.5.29.35", "1.3.6.1.4.1.8005.100.100.11"}

# signatureAlgorithm OID → (hash, padding kind)
_ALGORITHMS = {
    "1.2.840.113549.1.1.5": (hashes.SHA1, "rsa"),
    "1.2.840.113549.1.1.11": (hashes.SHA256, "rsa"),
    "1.2.840.113549.1.1.12": (hashes.SHA384, "rsa"),
    "1.2.840.113549.1.1.13": (hashes.SHA512, "rsa"),
    "1.2.840.10045.4.3.2": (hashes.SHA256, "ec"),
    "1.2.840.10045.4.3.3": (hashes.SHA384, "ec"),
}


class VomsError(Exception):
    """A VOMS attribute certificate that must not be believed; str() says why."""


class _ACLists(univ.SequenceOf):
    componentType = univ.SequenceOf(componentType=rfc5755.AttributeCertificate())


@dataclasses.dataclass(frozen=True)
class AttributeCertificate:
    vo: str
    uri: str  # host:port of the VOMS server, from policyAuthority
    fqans: tuple[str, ...]
    issuer_dn: str
    holder_dn: str
    holder_serial: int
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    signature_oid: str
    tbs: bytes  # DER of acinfo: what the signature covers
    signature: bytes


def _dn(name: rfc5280.Name) -> str:
    """Slash-form DN of a pyasn1 Name (rendered like pki.name_to_dn)."""
    from panda_server.pki import name_to_dn

    return name_to_dn(_x509_name(name))


def _x509_name(name: rfc5280.Name) -> x509.Name:
    # attribute values are DirectoryString/IA5String DER: each decodes to its text
    rdns = []
    for rdn in name["rdnSequence"]:
        attrs = []
        for atv in rdn:
            value, _ = decoder.decode(atv["value"])
            attrs.append(x509.NameAttribute(x509.ObjectIdentifier(str(atv["type"])), str(value)))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns)


def _general_names_dn(names: rfc5280.GeneralNames) -> str:
    for gn in names:
        if gn.getName() == "directoryName":
            return _dn(gn["directoryName"])
    raise VomsError("attribute certificate without a directory name")


def _time(value: univ.Any) -> dt.datetime:
    return value.asDateTime.astimezone(dt.UTC)


def _fqans(ac: rfc5755.AttributeCertificate) -> tuple[str, str, tuple[str, ...]]:
    """(vo, uri, fqans) of the FQAN attribute."""
    for attr in ac["acinfo"]["attributes"]:
        if attr["type"] != FQAN_ATTRIBUTE_OID:
            continue
        for raw in attr["values"]:
            ietf, _ = decoder.decode(raw, asn1Spec=rfc5755.IetfAttrSyntax())
            authority = ""
            if ietf["policyAuthority"].isValue:
                for gn in ietf["policyAuthority"]:
                    if gn.getName() == "uniformResourceIdentifier":
                        authority = str(gn["uniformResourceIdentifier"])
            vo, _, uri = authority.partition("://")
            values = tuple(bytes(v.getComponent()).decode("utf-8", "replace") for v in ietf["values"])
            return vo, uri, values
    raise VomsError("attribute certificate without FQANs")


def _parse_one(ac: rfc5755.AttributeCertificate) -> AttributeCertificate:
    info = ac["acinfo"]
    holder = info["holder"]["baseCertificateID"]
    if not holder.isValue:
        raise VomsError("attribute certificate without a baseCertificateID holder")
    vo, uri, fqans = _fqans(ac)
    if info["extensions"].isValue:
        for ext in info["extensions"]:
            oid = str(ext["extnID"])
            if bool(ext["critical"]) and oid not in _KNOWN_EXTENSIONS:
                raise VomsError(f"attribute certificate has a critical extension {oid} this server does not "
                                "implement (e.g. targets); it cannot be honoured")  # fmt: skip
    period = info["attrCertValidityPeriod"]
    return AttributeCertificate(
        vo=vo, uri=uri, fqans=fqans,
        issuer_dn=_general_names_dn(info["issuer"]["v2Form"]["issuerName"]),
        holder_dn=_general_names_dn(holder["issuer"]), holder_serial=int(holder["serial"]),
        serial=int(info["serialNumber"]),
        not_before=_time(period["notBeforeTime"]), not_after=_time(period["notAfterTime"]),
        signature_oid=str(ac["signatureAlgorithm"]["algorithm"]),
        tbs=encoder.encode(info), signature=ac["signatureValue"].asOctets(),
    )  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _parse_extension(der: bytes) -> tuple[AttributeCertificate, ...]:
    try:
        lists, rest = decoder.decode(der, asn1Spec=_ACLists())
        if rest:
            raise VomsError("trailing bytes after the VOMS extension")
        acs = [ac for inner in lists for ac in inner]
        if len(acs) > MAX_ACS:
            raise VomsError(f"{len(acs)} attribute certificates in one proxy (at most {MAX_ACS})")
        return tuple(_parse_one(ac) for ac in acs)
    except (PyAsn1Error, ValueError, TypeError, KeyError, IndexError, UnicodeError) as exc:
        raise VomsError(f"unreadable VOMS extension: {type(exc).__name__}") from None


def attribute_certificates(cert: x509.Certificate) -> tuple[AttributeCertificate, ...]:
    """The ACs a certificate carries (none if it has no VOMS extension)."""
    try:
        ext = cert.extensions.get_extension_for_oid(VOMS_AC_OID)
    except x509.ExtensionNotFound:
        return ()
    return _parse_extension(ext.value.value)


def _check_signature(ac: AttributeCertificate, server: x509.Certificate) -> None:
    algorithm = _ALGORITHMS.get(ac.signature_oid)
    if algorithm is None:
        raise VomsError(f"attribute certificate signature algorithm {ac.signature_oid} not supported")
    digest, kind = algorithm
    key = server.public_key()
    try:
        if kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
            key.verify(ac.signature, ac.tbs, padding.PKCS1v15(), digest())
        elif kind == "ec" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(ac.signature, ac.tbs, ec.ECDSA(digest()))
        else:
            raise InvalidSignature()
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        raise VomsError(f"the VOMS attribute certificate of {ac.vo} is not signed by the VOMS server "
                        f"{ac.issuer_dn} (forged or altered)") from None  # fmt: skip


def verify(
    ac: AttributeCertificate,
    *,
    holder: x509.Certificate,
    trusted: Mapping[str, Sequence[x509.Certificate]],
    now: dt.datetime,
) -> tuple[str, ...]:
    """The AC's FQANs if it is to be believed (see the module docstring), else VomsError."""
    from panda_server.pki import name_to_dn

    servers = [c for c in trusted.get(ac.vo, ()) if name_to_dn(c.subject) == ac.issuer_dn]
    if not servers:
        raise VomsError(f"VOMS server {ac.issuer_dn} is not trusted for VO {ac.vo or '?'} "
                        f"(no such certificate in the vomsdir)")  # fmt: skip
    errors = []
    for server in servers:
        if not server.not_valid_before_utc <= now <= server.not_valid_after_utc:
            errors.append(f"VOMS server certificate {ac.issuer_dn} is not valid now")
            continue
        try:
            _check_signature(ac, server)
            break
        except VomsError as exc:
            errors.append(str(exc))
    else:
        raise VomsError(errors[-1])
    if not ac.not_before - CLOCK_SKEW <= now <= ac.not_after:
        raise VomsError(f"the VOMS attributes of {ac.vo} are valid from {ac.not_before:%Y-%m-%d %H:%M:%S} to "
                        f"{ac.not_after:%Y-%m-%d %H:%M:%S} UTC, not now; renew the proxy")  # fmt: skip
    # VOMS-AA (and voms-proxy-fake's default) write the holder's subject; RFC 5755 and the C++
    # server's -newformat write its issuer: both name the same certificate with its serial
    holder_names = (name_to_dn(holder.subject), name_to_dn(holder.issuer))
    if ac.holder_dn not in holder_names or ac.holder_serial != holder.serial_number:
        raise VomsError(f"the VOMS attribute certificate was issued to {ac.holder_dn}, not to this "
                        f"certificate's owner {name_to_dn(holder.subject)}")  # fmt: skip
    prefix = f"/{ac.vo}"
    for fqan in ac.fqans:
        if fqan != prefix and not fqan.startswith(prefix + "/"):
            raise VomsError(f"FQAN {fqan} does not belong to VO {ac.vo}")
    return ac.fqans


def end_entity(chain: Sequence[x509.Certificate]) -> x509.Certificate | None:
    """The first certificate of a leaf-first chain that is not an RFC 3820 proxy."""
    from panda_server.pki import proxy_policy

    for cert in chain:
        try:
            if proxy_policy(cert) is None:
                return cert
        except (PyAsn1Error, ValueError, IndexError):
            return None
    return None


def chain_fqans(
    chain: Sequence[x509.Certificate],
    trusted: Mapping[str, Sequence[x509.Certificate]],
    now: dt.datetime,
) -> tuple[tuple[str, ...], dt.datetime | None]:
    """FQANs of a leaf-first proxy chain, and when they stop being valid (None: no AC).

    The nearest proxy that carries ACs counts (a proxy delegated from a VOMS proxy inherits its
    attributes); all its ACs must verify, or VomsError.
    """
    for cert in chain:
        acs = attribute_certificates(cert)
        if not acs:
            continue
        holder = end_entity(chain)
        if holder is None:
            raise VomsError("VOMS attributes in a chain without an end-entity certificate")
        fqans: list[str] = []
        for ac in acs:
            fqans += [f for f in verify(ac, holder=holder, trusted=trusted, now=now) if f not in fqans]
        return tuple(fqans), min(ac.not_after for ac in acs)
    return (), None


def load_vomsdir(directory: Path) -> dict[str, tuple[x509.Certificate, ...]]:
    """Trusted VOMS server certificates: `<directory>/<vo>/*.pem` (a missing dir trusts none)."""
    trusted: dict[str, tuple[x509.Certificate, ...]] = {}
    if not directory.is_dir():
        return trusted
    for vo_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        certs = []
        for pem in sorted(vo_dir.glob("*.pem")):
            try:
                certs += x509.load_pem_x509_certificates(pem.read_bytes())
            except ValueError:
                continue  # not a certificate file; .lsc files sit here too
        if certs:
            trusted[vo_dir.name] = tuple(certs)
    return trusted
