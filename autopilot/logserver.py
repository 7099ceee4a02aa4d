"""The factory's log server: <autopilot_dir>/logs over plain HTTP, read-only (the classic GTAG links).

Pilot logs hold no secret (the pilot conceals its proxy); the server only answers GET and HEAD
for files under the log directory, and shows logs as text in a browser.
"""

from __future__ import annotations

import functools
import http.server
import logging
import threading
from pathlib import Path

log = logging.getLogger("panda.autopilot.logs")

TEXT = {ext: "text/plain; charset=utf-8" for ext in (".out", ".err", ".log", ".rc", ".jdl", ".sh", ".sub")}


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TEXT}

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.info("%s %s", self.address_string(), format % args)


def serve(directory: Path, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """Start serving in a daemon thread; call .shutdown() to stop."""
    directory.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_Handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="autopilot-logs", daemon=True).start()
    log.info("serving pilot logs from %s at http://%s:%d/", directory, host, server.server_address[1])
    return server
