"""The codec: request bodies in, replies out, and panda-client's positional job states.

Legacy rules (S25 server/panda.py, reference/pilot.md §3.1):
- a body with Content-Type application/json is gunzipped when it is gzip (pilot3 never sets
  Content-Encoding), then parsed; JSON true/false become "True"/"False";
- other bodies are form data; GET uses the query string;
- the reply is JSON iff the Accept header contains application/json, else urlencoded.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
import zlib
from collections.abc import Mapping
from typing import Any

from panda_server.protocol.jobspec import JobSpec, SpecError, format_time, wire_value

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_BODY = 16 * 1024 * 1024  # decompressed bytes accepted in one request


class BodyError(ValueError):
    """A request body we refuse to read (too large, not gzip, not JSON, wrong shape)."""


def gunzip_capped(raw: bytes, limit: int) -> bytes:
    """Decompress gzip without ever holding more than `limit` bytes (a zip bomb stops early)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"body looks gzip-compressed but cannot be decompressed: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise BodyError(f"decompressed body exceeds {limit} bytes")
    return out


def _json_scalar(value: Any) -> Any:
    if value is True:
        return "True"
    if value is False:
        return "False"
    return value


def decode_body(
    raw: bytes,
    content_type: str | None,
    *,
    limit: int = DEFAULT_MAX_BODY,
    content_encoding: str | None = None,
) -> dict[str, Any]:
    """Parse a legacy request body into a flat dict of parameters."""
    if len(raw) > limit:
        raise BodyError(f"body exceeds {limit} bytes")
    ctype = (content_type or "").split(";")[0].strip().lower()
    if raw[:2] == GZIP_MAGIC or (content_encoding or "").lower() == "gzip":
        raw = gunzip_capped(raw, limit)
    if ctype == "application/json":
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BodyError(f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BodyError("a JSON body must be an object of parameters")
        return {str(k): _json_scalar(v) for k, v in data.items()}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyError("form body is not UTF-8") from None
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


# Parameter bounds (issue 4 hardening): every request's parameters pass check_params before any
# use case sees them. Large fields are the documents a pilot or client legitimately sends; they
# are bounded by the body limit only. Everything else is a short value.
MAX_PARAMS = 256
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 64 * 1024
LARGE_FIELDS = frozenset({"jobs", "xml", "metaData", "pilotLog", "stdout", "jobMetrics", "meta_data",
                          "pilot_log", "job_metrics", "job_output_report", "jobOutputReport"})  # fmt: skip


def _check_value(key: str, value: Any, depth: int = 0) -> None:
    if depth > 4:
        raise BodyError(f"parameter {key} is nested too deeply")
    if isinstance(value, str):
        if "\x00" in value:
            raise BodyError(f"parameter {key} contains a NUL character")
        if len(value) > MAX_VALUE_LENGTH and key not in LARGE_FIELDS:
            raise BodyError(f"parameter {key} is {len(value)} characters long (at most {MAX_VALUE_LENGTH})")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_value(key, item, depth + 1)
    elif isinstance(value, dict):
        for k, item in value.items():
            _check_value(f"{key}.{k}", item, depth + 1)
    elif value is not None and not isinstance(value, (int, float)):
        raise BodyError(f"parameter {key} has an unsupported type {type(value).__name__}")


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse parameter sets no client sends: too many, odd names, NULs, oversized values."""
    if len(params) > MAX_PARAMS:
        raise BodyError(f"{len(params)} parameters (at most {MAX_PARAMS})")
    for key, value in params.items():
        if (
            not isinstance(key, str)
            or not key
            or len(key) > MAX_KEY_LENGTH
            or not (key.isascii() and key.replace("_", "a").isalnum())
        ):
            raise BodyError(f"bad parameter name {str(key)[:MAX_KEY_LENGTH]!r}: letters, digits and _ only")
        _check_value(key, value)


def accepts_json(accept_header: str | None) -> bool:
    return "application/json" in (accept_header or "")


def encode_reply(data: Mapping[str, Any], as_json: bool) -> tuple[str, str]:
    """(body, content type) for a legacy reply dict such as {"StatusCode": 0, ...}."""
    if as_json:
        return json.dumps({k: _plain(v) for k, v in data.items()}, default=str), "application/json"
    # S25 getJob(nJobs): a list value travels as JSON text inside the urlencoded reply
    return urllib.parse.urlencode({k: _text(v) for k, v in data.items()}), "text/plain"


def _text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    return wire_value(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return wire_value(value)
    if hasattr(value, "value") and isinstance(value, int):  # IntEnum → int
        return int(value)
    return value


def decode_reply(text: str) -> dict[str, Any]:
    """Client side: a legacy reply is JSON if it looks like an object, else urlencoded."""
    text = text.strip()
    if text.startswith("{"):
        return json.loads(text)
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


# --- panda-client's positional job states (pandaclient/MiscUtils.dump_jobs_json) -------------


def _encode_special(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return {"_datetime_object": format_time(obj, micro=True)}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def decode_special(obj: dict[str, Any]) -> Any:
    if "_datetime_object" in obj:
        return dt.datetime.strptime(str(obj["_datetime_object"]), "%Y-%m-%d %H:%M:%S.%f")
    return obj


def dump_job_states(jobs: list[JobSpec]) -> str:
    return json.dumps([job.to_state() for job in jobs], default=_encode_special)


def load_job_states(text: str, *, max_jobs: int) -> list[JobSpec]:
    """Parse a `jobs` parameter; errors name the job index and the attribute."""
    try:
        states = json.loads(text, object_hook=decode_special)
    except (TypeError, ValueError) as exc:
        raise BodyError(f"jobs is not valid JSON: {exc}") from None
    if not isinstance(states, list):
        raise BodyError("jobs must be a JSON list of job states")
    if len(states) > max_jobs:
        raise BodyError(f"too many jobs in one submission: {len(states)} > {max_jobs}")
    jobs = []
    for index, state in enumerate(states):
        try:
            jobs.append(JobSpec.from_state(state))
        except SpecError as exc:
            raise BodyError(f"job {index}: {exc}") from None
    return jobs


# --- /api/v1 JSON: datetimes as {"__datetime__": iso} (S25 api; pandaclient decode_special_cases)


def v1_default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime):
        return {"__datetime__": obj.isoformat()}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def v1_object_hook(obj: dict[str, Any]) -> Any:
    if "__datetime__" in obj:
        return dt.datetime.fromisoformat(obj["__datetime__"])
    return obj


def v1_envelope(success: bool, message: str = "", data: Any = None) -> str:
    return json.dumps({"success": success, "message": message, "data": data}, default=v1_default)


def wire_value_default(obj: Any) -> Any:
    """json.dumps default for legacy JSON replies: datetimes as panda-client's _datetime_object."""
    return _encode_special(obj)
