"""Client settings from the classic environment variables (S08 Client.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    # PANDA_URL: http base for passive reads, e.g. http://localhost:25080/server/panda
    url: str = "http://localhost:25080/server/panda"
    # PANDA_URL_SSL: https base for everything active, e.g. https://localhost:25443/server/panda
    url_ssl: str = "https://localhost:25443/server/panda"
    # X509_USER_PROXY: the grid proxy file (cert + key + chain); default /tmp/x509up_u<uid>
    proxy: str = ""
    # X509_CERT_DIR: hashed directory of trusted CAs
    ca_dir: str = "/etc/grid-security/certificates"
    # PANDA_AUTH_TOKEN, else the file PANDA_AUTH_TOKEN_FILE (re-read per call): a WLCG bearer token
    # sent on HTTPS calls; with one, the default proxy is not presented (X509_USER_PROXY still is)
    token: str = ""
    token_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        env = os.environ if environ is None else environ
        token, token_file = env.get("PANDA_AUTH_TOKEN", ""), env.get("PANDA_AUTH_TOKEN_FILE", "")
        return cls(
            url=env.get("PANDA_URL", cls.url), url_ssl=env.get("PANDA_URL_SSL", cls.url_ssl),
            proxy=env.get("X509_USER_PROXY") or ("" if token or token_file else f"/tmp/x509up_u{os.getuid()}"),
            ca_dir=env.get("X509_CERT_DIR", cls.ca_dir), token=token, token_file=token_file,
        )  # fmt: skip

    def bearer(self) -> str | None:
        """The bearer token to send, or None; ValueError if the token file cannot be read."""
        if self.token or not self.token_file:
            return self.token.strip() or None
        try:
            return Path(self.token_file).read_text().strip() or None
        except OSError as exc:
            raise ValueError(f"PANDA_AUTH_TOKEN_FILE {self.token_file}: {exc.strerror or exc}") from None

    @staticmethod
    def base(url: str) -> str:
        """scheme://host:port of a PANDA_URL (the /server/panda path is added per call)."""
        return url.split("/server/panda")[0].rstrip("/")
