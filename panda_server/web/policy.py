"""Who may call what: one table for every route the server exposes.

tests/wire/test_policy.py walks the app's routes and the dispatch tables and fails if any
endpoint is missing here, or if this table names one that does not exist.

secure: needs HTTPS with a verified client certificate (legacy answers StatusCode=40 over HTTP,
        /api/v1 answers 403). Everything that changes state is secure (S08 isSecure list, S25 v1).
role:   "pilot" = pilot or production role (getJob/updateJob family); "production" = production
        role; None = any authenticated caller (ownership is checked by the use case).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Policy:
    secure: bool
    role: str | None = None
    methods: tuple[str, ...] = ("GET", "POST")


PASSIVE = Policy(secure=False)
ACTIVE = Policy(secure=True)
PILOT = Policy(secure=True, role="pilot")

POLICY: dict[str, Policy] = {
    # legacy /server/panda/<method>
    "/server/panda/isAlive": PASSIVE,
    "/server/panda/getServer": PASSIVE,
    "/server/panda/getJob": ACTIVE,  # without pilot role: only the caller's own jobs (S08)
    "/server/panda/updateJob": PILOT,
    "/server/panda/getStatus": ACTIVE,
    "/server/panda/checkJobStatus": ACTIVE,
    "/server/panda/submitJobs": ACTIVE,
    "/server/panda/getJobStatus": PASSIVE,
    "/server/panda/getFullJobStatus": ACTIVE,
    "/server/panda/killJobs": ACTIVE,
    "/server/panda/reassignJobs": ACTIVE,
    "/server/panda/queryPandaIDs": PASSIVE,
    "/server/panda/getJobStatisticsPerSite": PASSIVE,
    "/server/panda/getSiteSpecs": PASSIVE,
    "/server/panda/getCloudSpecs": PASSIVE,
    # /api/v1/<module>/<method>
    "/api/v1/system/is_alive": Policy(secure=False, methods=("GET",)),
    "/api/v1/metaconfig/get_site_specs": Policy(secure=False, methods=("GET",)),
    "/api/v1/job/submit": Policy(secure=True, methods=("POST",)),
    "/api/v1/job/get_status": Policy(secure=True),
    "/api/v1/job/get_description": Policy(secure=True),
    "/api/v1/job/get_description_incl_archive": Policy(secure=True),
    "/api/v1/job/kill": Policy(secure=True, methods=("POST",)),
    "/api/v1/job/reassign": Policy(secure=True, methods=("POST",)),
    "/api/v1/pilot/acquire_jobs": Policy(secure=True, methods=("POST",)),
    "/api/v1/pilot/update_job": Policy(secure=True, role="pilot", methods=("POST",)),
    "/api/v1/pilot/get_job_status": Policy(secure=True),
    # files
    "/cache/schedconfig/<queue>.all.json": Policy(secure=False, methods=("GET",)),
    "/cache/ddmendpoints.json": Policy(secure=False, methods=("GET",)),
    "/cache/<path>": Policy(secure=False, methods=("GET",)),
    "/api/v1/openapi.json": Policy(secure=False, methods=("GET",)),
}
