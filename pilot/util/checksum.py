"""File checksums as the pilot and the catalogue write them.

The job dict carries checksums as "ad:0a1b2c3d" (adler32, the ATLAS default) or "md5:<32 hex>";
the pilot verifies inputs against them and reports the adler32 of outputs. adler32 is always
8 lower-case hex digits, zero-padded (Rucio and xrdadler32 print it that way).
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib

CHUNK = 1 << 20  # 1 MiB: streams big files without holding them in memory

_HEX = re.compile(r"[0-9a-fA-F]+")
_PREFIXES = {"ad": "adler32", "adler32": "adler32", "md5": "md5"}


def adler32_file(path: str | os.PathLike[str]) -> str:
    """The adler32 of a file as 8 lower-case hex digits."""
    value = 1
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def md5_file(path: str | os.PathLike[str]) -> str:
    """The md5 of a file as 32 lower-case hex digits."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def parse_checksum(value: str | None) -> tuple[str, str] | None:
    """("adler32", hex) or ("md5", hex) from the job's checksum field; None when there is none.

    Accepts "ad:…", "adler32:…", "md5:…" and, like the pilot, a bare value (8 hex digits =
    adler32, 32 = md5). "NULL", "" and None mean "no checksum". Raises ValueError on garbage.
    """
    text = (value or "").strip()
    if not text or text.upper() in ("NULL", "NONE"):
        return None
    kind, sep, digits = text.partition(":")
    if not sep:
        kind, digits = ("md5" if len(text) == 32 else "ad"), text
    algo = _PREFIXES.get(kind.strip().lower())
    digits = digits.strip().lower()
    if algo is None or not _HEX.fullmatch(digits):
        raise ValueError(f"unknown checksum {value!r} (expected ad:<8 hex> or md5:<32 hex>)")
    if algo == "adler32":
        if len(digits) > 8:
            raise ValueError(f"adler32 checksum {value!r} has more than 8 hex digits")
        return algo, digits.zfill(8)
    if len(digits) != 32:
        raise ValueError(f"md5 checksum {value!r} is not 32 hex digits")
    return algo, digits
