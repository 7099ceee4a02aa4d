"""Errors that carry their wire meaning; web/render.py turns them into replies in one place.

Each class has the legacy StatusCode, the HTTP status for /api/v1, and a default message
(its docstring's first line) that tells the caller what went wrong.
"""

from __future__ import annotations

from panda_server.protocol.codes import StatusCode


class PandaError(Exception):
    """PanDA server error."""

    status_code: StatusCode = StatusCode.FAILED
    http_status: int = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidRequest(PandaError):
    """The request is malformed: a parameter is missing or has a bad value."""

    status_code = StatusCode.FAILED
    http_status = 400


class NotSecure(PandaError):
    """This method needs HTTPS with a client certificate (port 25443)."""

    status_code = StatusCode.NON_SECURE
    http_status = 403


class Forbidden(PandaError):
    """Permission denied."""

    status_code = StatusCode.PERMISSION
    http_status = 403


class RoleRequired(PandaError):
    """No production/pilot role in the certificate's VOMS FQANs, and not a registered pilot owner."""

    status_code = StatusCode.ROLE
    http_status = 403


class NotFound(PandaError):
    """No such object."""

    status_code = StatusCode.FAILED
    http_status = 404


class StateConflict(PandaError):
    """The job moved on before this change: another actor updated it first."""

    status_code = StatusCode.FAILED
    http_status = 409


class DBUnavailable(PandaError):
    """The PanDA database is not reachable; try again later."""

    status_code = StatusCode.FAILED
    http_status = 503
