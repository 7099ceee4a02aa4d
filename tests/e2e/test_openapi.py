"""The published OpenAPI document describes exactly the /api/v1 endpoints the server answers."""

from __future__ import annotations

from panda_server.web import api_v1
from panda_server.web.policy import POLICY


def test_openapi_lists_every_v1_endpoint_with_its_policy(live):
    doc = live.session(None).get(f"{live.http_url}/api/v1/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {f"/api/v1/{k}" for k in api_v1.METHODS}
    for path, ops in doc["paths"].items():
        policy = POLICY[path]
        assert set(ops) == {m.lower() for m in policy.methods}
        for op in ops.values():
            assert ("security" in op) == policy.secure
    # and each documented path really answers (not 404) over HTTP
    session = live.session(None)
    for path, ops in doc["paths"].items():
        method = next(iter(ops))
        r = session.request(method.upper(), f"{live.http_url}{path}", timeout=10)
        assert r.status_code != 404, path
