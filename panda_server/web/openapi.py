"""/api/v1/openapi.json: an OpenAPI 3.1 description of the /api/v1 surface, built from the
dispatch table and the policy table so that it cannot drift from what the server does."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from panda_server.web import api_v1
from panda_server.web.policy import POLICY

bp = Blueprint("openapi", __name__)

ENVELOPE = {
    "type": "object",
    "required": ["success", "message", "data"],
    "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}, "data": {}},
}


def _operation(key: str, method: str) -> dict[str, Any]:
    policy = POLICY[f"/api/v1/{key}"]
    op: dict[str, Any] = {
        "operationId": f"{key.replace('/', '_')}_{method}",
        "summary": f"{key} ({'mTLS client certificate' if policy.secure else 'no certificate needed'}"
        f"{', role ' + policy.role if policy.role else ''})",
        "responses": {
            "200": {"description": "envelope", "content": {"application/json": {"schema": ENVELOPE}}},
            "403": {"description": "not secure, no role, or limited proxy"},
            "405": {"description": "wrong HTTP method"},
        },
    }
    if method == "post":
        op["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
    if policy.secure:
        op["security"] = [{"mutualTLS": []}]
    return op


def document() -> dict[str, Any]:
    paths = {}
    for key in sorted(api_v1.METHODS):
        methods = POLICY[f"/api/v1/{key}"].methods
        paths[f"/api/v1/{key}"] = {m.lower(): _operation(key, m.lower()) for m in methods}
    return {
        "openapi": "3.1.0",
        "info": {"title": "PanDA-WMS /api/v1", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {"mutualTLS": {"type": "mutualTLS"}}},
    }


@bp.route("/api/v1/openapi.json", methods=["GET"])
def openapi() -> Response:
    return Response(json.dumps(document(), indent=1), mimetype="application/json")
