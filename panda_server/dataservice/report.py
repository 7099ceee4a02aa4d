"""Parse the pilot's output report: pilot2/3 JSON, or the 2008 POOL file catalogue XML.

Pure: text in, {lfn: FileReport} out. Both forms carry, per file, the GUID, the size and a
checksum (adler32 or md5); the Adder checks them against the job's output and log files.
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

MAX_REPORT_BYTES = 4 * 1024 * 1024


class ReportError(ValueError):
    """The report cannot be used (names what is wrong)."""


@dataclasses.dataclass(frozen=True)
class FileReport:
    lfn: str
    guid: str | None
    fsize: int | None
    checksum: str | None  # "ad:<hex>" or "md5:<hex>"
    surl: str | None = None
    endpoint: str | None = None


def _checksum(adler32: object, md5: object) -> str | None:
    if adler32 not in (None, ""):
        return f"ad:{adler32}"
    if md5 not in (None, ""):
        return f"md5:{md5}"
    return None


def _size(lfn: str, raw: object) -> int | None:
    if raw in (None, ""):
        return None
    try:
        return int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ReportError(f"{lfn}: fsize {raw!r} is not an integer") from None


def parse(text: str | None) -> dict[str, FileReport]:
    if text in (None, "", "NULL"):
        return {}
    if len(text) > MAX_REPORT_BYTES:
        raise ReportError(f"report exceeds {MAX_REPORT_BYTES} bytes")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _parse_json(stripped)
    if stripped.startswith("<"):
        return _parse_pool_xml(stripped)
    raise ReportError("report is neither JSON nor POOL XML")


def _parse_json(text: str) -> dict[str, FileReport]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ReportError(f"report is not valid JSON: {exc}") from None
    out = {}
    for lfn, info in data.items():
        if not isinstance(info, dict):
            raise ReportError(f"{lfn}: expected an object of file attributes")
        out[lfn] = FileReport(
            lfn=lfn, guid=info.get("guid"), fsize=_size(lfn, info.get("fsize")),
            checksum=_checksum(info.get("adler32"), info.get("md5sum") or info.get("md5")),
            surl=info.get("surl"), endpoint=info.get("endpoint"),
        )  # fmt: skip
    return out


def _parse_pool_xml(text: str) -> dict[str, FileReport]:
    if "<!ENTITY" in text:
        raise ReportError("report XML must not declare entities")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ReportError(f"report is not valid XML: {exc}") from None
    out = {}
    for node in root.iter("File"):
        lfn_node = node.find("logical/lfn")
        if lfn_node is None or not lfn_node.get("name"):
            raise ReportError("a <File> has no logical/lfn name")
        lfn = lfn_node.get("name")
        meta = {m.get("att_name"): m.get("att_value") for m in node.iter("metadata")}
        out[lfn] = FileReport(lfn=lfn, guid=node.get("ID"), fsize=_size(lfn, meta.get("fsize")),
                              checksum=_checksum(meta.get("adler32"), meta.get("md5sum")))  # fmt: skip
    return out
