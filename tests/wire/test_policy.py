"""Every endpoint the server exposes declares who may call it, in one table (web/policy.POLICY).

The Flask app is built but never started: its url_map, expanded through the legacy and /api/v1
dispatch tables, must equal the policy table's keys.
"""

from __future__ import annotations

import re

import pytest

from panda_server.app import create_app
from panda_server.settings import Settings
from panda_server.web import api_v1, legacy
from panda_server.web.policy import POLICY

# The classic method list (reference/panda-server.md §3, DESIGN §4) as this server implements it
# today. Removing one breaks pilots or clients; adding one must be a deliberate edit here.
LEGACY_METHODS = {
    "isAlive", "getServer", "getJob", "updateJob", "getStatus", "checkJobStatus", "submitJobs",
    "getJobStatus", "getFullJobStatus", "killJobs", "reassignJobs", "queryPandaIDs",
    "getJobStatisticsPerSite", "getSiteSpecs", "getCloudSpecs", "datasetCompleted",
}  # fmt: skip
V1_METHODS = {
    "system/is_alive", "metaconfig/get_site_specs", "job/submit", "job/get_status", "job/get_description",
    "job/get_description_incl_archive", "job/kill", "job/reassign", "pilot/acquire_jobs",
    "pilot/update_job", "pilot/get_job_status",
}  # fmt: skip
# Routes Flask adds by itself, each with the reason it is harmless; see test_no_static_route.
FLASK_BUILTIN = {"/static/<filename>"}


@pytest.fixture(scope="module")
def app(db_url, pki):
    return create_app(Settings(database_url=db_url, pki_dir=pki.root))


def _plain(rule: str) -> str:
    """/cache/<path:path> → /cache/<path> (converters dropped, as the policy table writes them)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"<\1>", rule)


def endpoints(app) -> dict[str, set[str]]:
    """Every reachable endpoint → the HTTP methods its route accepts."""
    out: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        methods = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        if rule.rule == "/server/panda/<method>":
            out.update({f"/server/panda/{m}": methods for m in legacy.METHODS})
        elif rule.rule == "/api/v1/<module>/<method>":
            out.update({f"/api/v1/{k}": methods for k in api_v1.METHODS})
        else:
            out[_plain(rule.rule)] = methods
    return out


def test_every_reachable_endpoint_has_a_policy(app):
    missing = set(endpoints(app)) - set(POLICY) - FLASK_BUILTIN
    assert not missing, f"endpoints without an entry in web/policy.POLICY: {sorted(missing)}"


def test_every_policy_entry_names_a_reachable_endpoint(app):
    stale = set(POLICY) - set(endpoints(app))
    assert not stale, f"POLICY entries for endpoints that do not exist: {sorted(stale)}"


def test_policy_methods_are_served_by_the_route(app):
    routes = endpoints(app)
    for key, policy in POLICY.items():
        assert policy.methods, key
        assert set(policy.methods) <= routes[key], (key, policy.methods, routes[key])


def test_the_generic_routes_are_the_only_dispatchers(app):
    dispatchers = {r.rule for r in app.url_map.iter_rules() if "<method>" in r.rule}
    assert dispatchers == {"/server/panda/<method>", "/api/v1/<module>/<method>"}


def test_legacy_method_list_is_pinned():
    assert set(legacy.METHODS) == LEGACY_METHODS
    assert {k for k in POLICY if k.startswith("/server/panda/")} == {
        f"/server/panda/{m}" for m in LEGACY_METHODS
    }


def test_v1_method_list_is_pinned():
    assert set(api_v1.METHODS) == V1_METHODS


def test_active_endpoints_are_secure():
    """Everything that changes state or hands out jobs needs HTTPS with a client certificate."""
    active = {
        "/server/panda/getJob", "/server/panda/updateJob", "/server/panda/submitJobs",
        "/server/panda/killJobs", "/server/panda/reassignJobs", "/api/v1/job/submit", "/api/v1/job/kill",
        "/api/v1/job/reassign", "/api/v1/pilot/acquire_jobs", "/api/v1/pilot/update_job",
    }  # fmt: skip
    for key in active:
        assert POLICY[key].secure, key
    assert POLICY["/server/panda/updateJob"].role == "pilot"
    assert POLICY["/api/v1/pilot/update_job"].role == "pilot"
    # S25: these /api/v1 routes are the insecure ones
    insecure_v1 = {k for k, p in POLICY.items() if k.startswith("/api/v1/") and not p.secure}
    assert insecure_v1 == {
        "/api/v1/system/is_alive",
        "/api/v1/metaconfig/get_site_specs",
        "/api/v1/openapi.json",
    }


def test_state_changing_v1_routes_are_post_only():
    for key in ("job/submit", "job/kill", "job/reassign", "pilot/acquire_jobs", "pilot/update_job"):
        assert POLICY[f"/api/v1/{key}"].methods == ("POST",), key


def test_no_static_route(app):
    assert "/static/<filename>" not in endpoints(app)


# The issue-4 rules, as the table must state them (the wire and security tests check behaviour).
PILOT_ROLE = {"getJob", "updateJob", "getStatus", "checkJobStatus", "pilot/acquire_jobs", "pilot/update_job",
              "pilot/get_job_status"}  # fmt: skip
OWNER_RULES = {"submitJobs": "submitter", "job/submit": "submitter", "killJobs": "own-jobs", "job/kill": "own-jobs",
               "reassignJobs": "own-jobs", "job/reassign": "own-jobs"}  # fmt: skip


def _key(name: str) -> str:
    return f"/api/v1/{name}" if "/" in name else f"/server/panda/{name}"


def test_pilot_calls_need_the_pilot_role():
    for name in PILOT_ROLE:
        policy = POLICY[_key(name)]
        assert policy.secure and policy.role == "pilot", name


def test_owner_rules_are_declared():
    for name, rule in OWNER_RULES.items():
        assert POLICY[_key(name)].secure and POLICY[_key(name)].owner == rule, name
    assert {p.owner for p in POLICY.values()} <= {None, "submitter", "own-jobs"}


def test_everything_that_changes_state_is_secure():
    for key, policy in POLICY.items():
        if "POST" in policy.methods and key.startswith("/api/v1/") and not policy.secure:
            assert key in ("/api/v1/system/is_alive", "/api/v1/metaconfig/get_site_specs"), key
