#!/usr/bin/env python3
"""panda-healthcheck [http|https]: exit 0 when this container's listener answers isAlive.

Used by the compose healthchecks of server-https and server-http. The scheme defaults to
$PANDA_LISTEN (as in gunicorn_conf). HTTPS is verified against the local CA (PANDA_PKI_DIR/ca)
and the host certificate's SAN `localhost`; no client certificate is needed (isAlive is passive).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request

from panda_server.settings import Settings


def main(argv: list[str]) -> int:
    scheme = argv[1] if len(argv) > 1 else os.environ.get("PANDA_LISTEN", "https")
    settings = Settings.from_env()
    if scheme == "https":
        context = ssl.create_default_context(cafile=str(settings.ca_dir / "ca.pem"))
        url = f"https://localhost:{settings.https_port}/server/panda/isAlive"
    else:
        context = None
        url = f"http://127.0.0.1:{settings.http_port}/server/panda/isAlive"
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as reply:
            body = reply.read().decode(errors="replace").strip()
    except Exception as exc:  # any failure is "unhealthy"; say why in `docker inspect`
        print(f"{url}: {exc}", file=sys.stderr)
        return 1
    print(f"{url}: {body}")
    return 0 if body == "alive=yes" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
