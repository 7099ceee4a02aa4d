"""/cache/: queuedata and DDM endpoints for pilots (reference/pilot.md §4), and cached files.

The queuedata is rendered from the schedconfig table on each request, so a `panda-schedconfig
sync` is visible at once. Plain files (user sandboxes) are served from Settings.cache_dir. The
job-signing public key is served from the PKI (Settings.jobsign_pub): it is public by design.
"""

from __future__ import annotations

import functools
import json
import mimetypes

from flask import Blueprint, Response, abort, send_from_directory

from panda_server.db.engine import transaction
from panda_server.errors import PandaError
from panda_server.taskbuffer import sites
from panda_server.web import common
from schedconfig import export
from schedconfig.model import ConfigError, QueueSpec
from schedconfig.sync import read_queues

bp = Blueprint("cache", __name__)
_ENCODED_TYPES = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def _json(data: object) -> Response:
    return Response(json.dumps(data, indent=1, sort_keys=True), mimetype="application/json")


def _guarded(key: str):
    """Apply the policy table entry `key`; a refusal becomes a JSON error with its HTTP status."""

    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kwargs):
            try:
                common.enforce(key)
            except PandaError as exc:
                return Response(json.dumps({"error": exc.message}), status=exc.http_status,
                                mimetype="application/json")  # fmt: skip
            return view(*args, **kwargs)

        return inner

    return wrap


@bp.route("/cache/schedconfig/<queue>.all.json", methods=["GET"])
@_guarded("/cache/schedconfig/<queue>.all.json")
def queuedata(queue: str) -> Response:
    with transaction(common.engine()) as conn:
        data = sites.queue_data(conn, queue)
    if data is None:
        return Response(json.dumps({"error": f"no queue {queue} in schedconfig"}), status=404,
                        mimetype="application/json")  # fmt: skip
    try:
        spec = QueueSpec.from_dict(data, source=f"schedconfig:{queue}")
    except ConfigError as exc:
        return Response(json.dumps({"error": str(exc)}), status=500, mimetype="application/json")
    return _json(export.queuedata(spec, storage_root=common.settings().storage_root))


@bp.route("/cache/ddmendpoints.json", methods=["GET"])
@_guarded("/cache/ddmendpoints.json")
def ddmendpoints() -> Response:
    with transaction(common.engine()) as conn:
        queues = read_queues(conn)
    return _json(export.ddmendpoints(queues, storage_root=common.settings().storage_root))


@bp.route("/cache/jobsign-pub.pem", methods=["GET"])
@_guarded("/cache/jobsign-pub.pem")
def jobsign_pub() -> Response:
    """The public half of the job-signing key: pilots verify each job's jobSignature with it."""
    path = common.settings().jobsign_pub
    try:
        data = path.read_bytes()
    except OSError as exc:
        error = f"no job-signing public key: {exc.strerror}; run panda-ca init"
        return Response(json.dumps({"error": error}), status=404, mimetype="application/json")
    return Response(data, mimetype="application/x-pem-file")


@bp.route("/cache/<path:path>", methods=["GET"])
@_guarded("/cache/<path>")
def cached_file(path: str) -> Response:
    directory = common.settings().cache_dir
    if not directory.is_dir():
        abort(404)
    # a .tar.gz is the file itself, not a compressed transfer: no Content-Encoding, or HTTP
    # clients (requests, curl --compressed) would inflate the sandbox while saving it
    ctype, encoding = mimetypes.guess_type(path)
    if encoding is not None:
        ctype = _ENCODED_TYPES.get(encoding, "application/octet-stream")
    return send_from_directory(directory, path, mimetype=ctype or "application/octet-stream")  # stays inside
