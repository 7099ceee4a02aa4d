"""The pilots' proxy: the factory submits nothing with one that has expired or is about to."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from cryptography import x509

FATAL_SECONDS = 3600  # less left than this: no pilot would live long enough to be useful
WARN_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class Problem:
    text: str
    fatal: bool


def proxy_problem(path: Path, now: dt.datetime) -> Problem | None:
    """None when the proxy at `path` is readable and valid for a day more; else what is wrong."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())  # the first certificate: the proxy's own
    except (OSError, ValueError) as exc:
        return Problem(f"pilot proxy {path} unreadable: {exc}", True)
    left = (cert.not_valid_after_utc.replace(tzinfo=None) - now).total_seconds()
    if left < FATAL_SECONDS:
        what = "has expired" if left <= 0 else f"expires in {int(left // 60)} min"
        return Problem(f"pilot proxy {path} {what}: no pilots submitted; renew it", True)
    if left < WARN_SECONDS:
        return Problem(f"pilot proxy {path} expires in {left / 3600:.1f} h; renew it", False)
    return None
