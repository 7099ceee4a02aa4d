"""The factory's log server: <autopilot_dir>/logs over plain HTTP, read-only (the classic GTAG links).

Pilot logs hold no secret (the pilot conceals its proxy); the server only answers GET and HEAD,
only for logs (and the pilot tarball) whose real path is under the log directory, and shows
logs as text in a browser.
"""

from __future__ import annotations

import functools
import http.server
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("panda.autopilot.logs")

TEXT = {ext: "text/plain; charset=utf-8" for ext in (".out", ".err", ".log", ".rc", ".jdl", ".sh", ".sub")}


SERVED = (".out", ".err", ".log", ".rc", ".jdl", "pilotcode.tar.gz")  # not the job scripts (.sh)


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **TEXT}

    def send_head(self):
        """Only logs (and the pilot tarball) under the log directory: no link leads outside it."""
        path = os.path.realpath(self.translate_path(self.path))
        root = os.path.realpath(self.directory)
        inside = path == root or path.startswith(root + os.sep)
        if not inside or (os.path.isfile(path) and not path.endswith(SERVED)):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

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
