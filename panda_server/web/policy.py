"""Who may call what: one table for every route the server exposes.

tests/wire/test_policy.py walks the app's routes and the dispatch tables and fails if any
endpoint is missing here, or if this table names one that does not exist.

secure: needs HTTPS with a verified client certificate or token (legacy answers StatusCode=40
        over HTTP, /api/v1 answers 403). Everything that changes state is secure (S08 isSecure
        list, S25 v1). A secure call is also refused (web/common.enforce, in this order) for a
        limited proxy, VOMS attributes or a token that do not verify, no VO authorized for PanDA,
        a user marked disabled, and a missing role.
role:   "pilot" = pilot or production role (getJob/updateJob family); "production" = production
        role; None = any authenticated member of an authorized VO.
owner:  the ownership rule the use case applies on top (declared here, enforced by the use case;
        tests/security/test_attacks.py and tests/wire/ exercise each against the live server):
        "submitter" = jobs are stamped with the caller's DN and `managed` ones need the production
        role (userif/service.py, taskbuffer/store.py); "own-jobs" = only the caller's own jobs
        unless production role (taskbuffer/control.may_act_on).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Policy:
    secure: bool
    role: str | None = None
    methods: tuple[str, ...] = ("GET", "POST")
    owner: str | None = None


PASSIVE = Policy(secure=False)
ACTIVE = Policy(secure=True)
PILOT = Policy(secure=True, role="pilot")
SUBMIT = Policy(secure=True, owner="submitter")
OWN_JOBS = Policy(secure=True, owner="own-jobs")

POLICY: dict[str, Policy] = {
    # legacy /server/panda/<method>
    "/server/panda/isAlive": PASSIVE,
    "/server/panda/getServer": PASSIVE,
    "/server/panda/getJob": PILOT,  # S25: StatusCode=60 without role (S08 let users pull their own)
    "/server/panda/updateJob": PILOT,
    "/server/panda/getStatus": PILOT,
    "/server/panda/checkJobStatus": PILOT,
    "/server/panda/submitJobs": SUBMIT,
    "/server/panda/getJobStatus": PASSIVE,
    "/server/panda/getFullJobStatus": ACTIVE,
    "/server/panda/killJobs": OWN_JOBS,
    "/server/panda/reassignJobs": OWN_JOBS,
    "/server/panda/queryPandaIDs": PASSIVE,
    "/server/panda/getJobStatisticsPerSite": PASSIVE,
    "/server/panda/getSiteSpecs": PASSIVE,
    "/server/panda/getCloudSpecs": PASSIVE,
    # DDM's subscription callback (S08: DQ2 site services); our DDM agent presents a production
    # identity (docs/ddm.md); what it claims is checked with DDM before anything changes
    "/server/panda/datasetCompleted": Policy(secure=True, role="production"),
    # /api/v1/<module>/<method>
    "/api/v1/system/is_alive": Policy(secure=False, methods=("GET",)),
    "/api/v1/metaconfig/get_site_specs": Policy(secure=False, methods=("GET",)),
    "/api/v1/job/submit": Policy(secure=True, methods=("POST",), owner="submitter"),
    "/api/v1/job/get_status": Policy(secure=True),
    "/api/v1/job/get_description": Policy(secure=True),
    "/api/v1/job/get_description_incl_archive": Policy(secure=True),
    "/api/v1/job/kill": Policy(secure=True, methods=("POST",), owner="own-jobs"),
    "/api/v1/job/reassign": Policy(secure=True, methods=("POST",), owner="own-jobs"),
    "/api/v1/pilot/acquire_jobs": Policy(secure=True, role="pilot", methods=("POST",)),
    "/api/v1/pilot/update_job": Policy(secure=True, role="pilot", methods=("POST",)),
    "/api/v1/pilot/get_job_status": Policy(secure=True, role="pilot"),
    # files
    "/cache/schedconfig/<queue>.all.json": Policy(secure=False, methods=("GET",)),
    "/cache/ddmendpoints.json": Policy(secure=False, methods=("GET",)),
    "/cache/jobsign-pub.pem": Policy(secure=False, methods=("GET",)),  # public key pilots verify jobs with
    "/cache/<path>": Policy(secure=False, methods=("GET",)),
    "/api/v1/openapi.json": Policy(secure=False, methods=("GET",)),
}
