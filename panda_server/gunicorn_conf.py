"""gunicorn settings from PANDA_* (Settings). PANDA_LISTEN=https|http picks the listener.

HTTPS (25443): client certificates verified against the hashed CA directory, RFC 3820 proxies
allowed (VERIFY_ALLOW_PROXY_CERTS), CERT_OPTIONAL like mod_ssl's `SSLVerifyClient optional`, so
a request without a certificate reaches the app and gets a clear "not secure" answer while an
untrusted certificate is refused in the handshake. HTTP (25080) serves passive reads.
gthread workers keep TLS connections alive (sync workers would handshake per request).
"""

import os
import ssl

from panda_server.settings import Settings

_s = Settings.from_env()
_https = os.environ.get("PANDA_LISTEN", "https") == "https"

bind = f"{_s.host}:{_s.https_port if _https else _s.http_port}"
workers = _s.workers
worker_class = "gthread"
threads = _s.threads
keepalive = 30
timeout = 120
graceful_timeout = 20
control_socket_disable = True  # gunicorn ≥ 27 would share $HOME/.gunicorn/gunicorn.ctl between instances
accesslog = os.environ.get("PANDA_ACCESS_LOG") or None
proc_name = f"panda-server-{'https' if _https else 'http'}"

if _https:
    certfile = str(_s.hostcert)
    keyfile = str(_s.hostkey)
    cert_reqs = ssl.CERT_OPTIONAL

    def ssl_context(conf, default_ssl_context_factory):
        ctx = default_ssl_context_factory()
        ctx.load_verify_locations(capath=str(_s.ca_dir))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
