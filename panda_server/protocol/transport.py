"""PandaSession: HTTP(S) calls to a PanDA server with a grid proxy, for clients and tools.

requests with keep-alive; the proxy file (cert + key + chain) is the client certificate and
the server is verified against X509_CERT_DIR (a hashed CA directory) or a CA file. Environment
CA bundles are ignored on purpose (trust_env=False): grid hosts are signed by grid CAs. A WLCG
bearer token, if given, goes as `Authorization: Bearer` on HTTPS calls only (never in clear text).
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import requests

from panda_server.protocol import wire


class TransportError(RuntimeError):
    """The server could not be reached or answered with an HTTP error."""


class PandaSession:
    def __init__(
        self,
        *,
        url: str,
        url_ssl: str,
        proxy: str | None,
        ca: str | bool | None,
        timeout: float = 120,
        token: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.url_ssl = url_ssl.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = ca if ca not in (None, "") else True
        if proxy:
            self.http.cert = proxy

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        if self.token and url.startswith("https://"):
            kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {self.token}"}
        try:
            response = self.http.post(url, timeout=self.timeout, **kwargs)
        except (requests.RequestException, OSError) as exc:  # OSError: unreadable proxy file
            raise TransportError(f"cannot reach {url}: {exc}") from None
        if response.status_code >= 400 and "application/json" not in response.headers.get("Content-Type", ""):
            raise TransportError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        return response

    def legacy(
        self,
        method: str,
        params: dict[str, Any],
        *,
        secure: bool = True,
        as_json: bool = False,
        gzip_json: bool = False,
        object_hook: Any = None,
    ) -> Any:
        """POST /server/panda/<method>; returns the decoded reply (dict, list or text)."""
        base = self.url_ssl if secure else self.url
        url = f"{base}/server/panda/{method}"
        headers = {"Accept": "application/json"} if as_json else {}
        if gzip_json:  # pilot3's encoding: gzip'ed JSON without Content-Encoding
            body = gzip.compress(json.dumps(params).encode())
            response = self._post(url, data=body, headers={**headers, "Content-Type": "application/json"})
        else:
            response = self._post(url, data=params, headers=headers)
        text = response.text
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(text, object_hook=object_hook)
        return wire.decode_reply(text) if "=" in text else text

    def api(self, endpoint: str, params: dict[str, Any]) -> tuple[bool, str, Any]:
        """POST /api/v1/<endpoint> with a JSON body; returns (success, message, data)."""
        url = f"{self.url_ssl}/api/v1/{endpoint}"
        response = self._post(url, data=json.dumps(params), headers={
            "Content-Type": "application/json", "Accept": "application/json"})  # fmt: skip
        try:
            doc = json.loads(response.text, object_hook=wire.v1_object_hook)
        except ValueError:
            raise TransportError(f"{url}: not a JSON reply: {response.text[:200]}") from None
        return bool(doc.get("success")), str(doc.get("message", "")), doc.get("data")

    def close(self) -> None:
        self.http.close()
