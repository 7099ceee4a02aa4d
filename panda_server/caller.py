"""Who is calling: built by web/auth.py from the TLS peer, passed to every use case."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Caller:
    dn: str | None = None  # bare DN (proxy CNs stripped); None over plain HTTP
    secure: bool = False  # HTTPS with a verified client certificate
    limited_proxy: bool = False
    fqans: tuple[str, ...] = ()  # verified VOMS FQANs (or token groups)
    vo_member: bool = False  # an FQAN of a VO authorized for PanDA (Settings.vos)
    pilot: bool = False  # may fetch and update jobs for any user (pilot or production role)
    production: bool = False  # may submit managed jobs and act on other users' jobs
    credential_error: str | None = None  # the credential is not to be believed: refuse active calls
    host: str = ""  # remote address, for logs

    @property
    def name(self) -> str:
        return self.dn or "anonymous"
