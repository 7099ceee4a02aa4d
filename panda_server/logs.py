"""Logging set-up: one format with identifiers; never log secrets (proxies, keys, tokens)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

# user= is the DN of the caller whose request produced the line ("-" outside requests), so every
# log line of the server can be traced to a person (issue 4: the user is tracked on every line)
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] user=%(user)s %(message)s"

# Set by the web app: returns the current request's caller DN, or None outside a request.
current_user: Callable[[], str | None] = lambda: None  # noqa: E731


class _UserFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "user"):
            try:
                record.user = current_user() or "-"
            except Exception:  # logging must never fail a request
                record.user = "-"
        return True


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if getattr(root, "_panda_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_UserFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root._panda_configured = True  # type: ignore[attr-defined]
