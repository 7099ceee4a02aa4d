"""Drive the unmodified PyPI panda-client (2.2.0) for the interop tests.

Run with the panda-client venv's python, never with the project's: it imports only
``pandaclient`` and the standard library. The command is one JSON object, given as the
first argument or on stdin; the answer is one JSON object on stdout (anything the client
prints goes to stderr). The server location and credentials come from the environment,
as for any panda-client user: PANDA_URL_SSL, PANDA_URL, PANDACACHE_URL,
PANDA_BEHIND_REAL_LB=1, PANDA_AUTH=x509_no_grid, PANDA_NICKNAME, X509_USER_PROXY,
X509_CERT_DIR.

Commands ({"op": ...}):
  hello                               Client.hello()
  submit  {"jobs": [JOB, ...]}        Client.submitJobs([pandaclient JobSpec, ...])
  status  {"ids": [...]}              Client.getJobStatus(ids)
  full_status {"ids": [...]}          Client.getFullJobStatus(ids)
  kill    {"ids": [...]}              Client.killJobs(ids)
  golden                              the unit-test fixture: dump_jobs_json of two fixed jobs and
                                      the JobSpec/FileSpec attribute names (no server needed)
JOB is {"attrs": {name: value}, "files": [{name: value}, ...]}; a value {"__datetime__": iso}
is a datetime. JobSpecs in answers are {"class", "attrs", "Files": [{"class", "attrs"}]} with
the values as the client sees them ("NULL" for unset) and datetimes as {"__datetime__": iso}.
"""

import contextlib
import datetime
import json
import sys


def _decode(value):
    if isinstance(value, dict) and "__datetime__" in value:
        return datetime.datetime.fromisoformat(value["__datetime__"])
    return value


def _encode(value):
    if isinstance(value, datetime.datetime):
        return {"__datetime__": value.isoformat()}
    return value


def _class_name(obj):
    """Where the class comes from; MiscUtils relabels __module__ as pandaserver.taskbuffer.* for pickle."""
    from pandaclient import FileSpec, JobSpec

    for module in (JobSpec, FileSpec):
        cls = getattr(module, module.__name__.rsplit(".", 1)[-1])
        if type(obj) is cls:
            return f"{module.__name__}.{cls.__qualname__}"
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def build_jobs(specs):
    from pandaclient.FileSpec import FileSpec
    from pandaclient.JobSpec import JobSpec

    jobs = []
    for spec in specs:
        job = JobSpec()
        for name, value in spec.get("attrs", {}).items():
            if name not in JobSpec._attributes:
                raise SystemExit(f"JobSpec has no attribute {name!r}")
            setattr(job, name, _decode(value))
        for file_attrs in spec.get("files", []):
            file = FileSpec()
            for name, value in file_attrs.items():
                if name not in FileSpec._attributes:
                    raise SystemExit(f"FileSpec has no attribute {name!r}")
                setattr(file, name, _decode(value))
            job.addFile(file)
        jobs.append(job)
    return jobs


def describe(job):
    if job is None:
        return None
    return {
        "class": _class_name(job),
        "attrs": {name: _encode(getattr(job, name)) for name in job._attributes},
        "Files": [
            {"class": _class_name(f), "attrs": {name: _encode(getattr(f, name)) for name in f._attributes}}
            for f in job.Files
        ],
    }


def golden():
    """The fixture of tests/unit/protocol: two jobs as MiscUtils.dump_jobs_json serialises them."""
    from pandaclient import MiscUtils, PandaToolsPkgInfo
    from pandaclient.FileSpec import FileSpec
    from pandaclient.JobSpec import JobSpec

    job = JobSpec()
    job.jobDefinitionID = 42
    job.jobName = "user.jdoe.golden.1"
    job.transformation = "https://pandawms.example/trf/runGen-00-00-02"
    job.jobParameters = '-j "" --sourceURL https://cache.example:25443 -p "echo%20hello"'
    job.prodSourceLabel = "user"
    job.computingSite = "CLOUDA_T1"
    job.cloud = "CLOUDA"
    job.assignedPriority = 1000
    job.currentPriority = 1000
    job.maxCpuCount = 86400
    job.cpuConversion = 1.5
    job.AtlasRelease = "Atlas-14.2.20"
    job.homepackage = "AnalysisTransforms"
    job.destinationSE = "CLOUDA_T1"
    job.destinationDBlock = "user.jdoe.golden.out"
    job.jobsetID = 7
    job.specialHandling = "ddm:rucio"
    job.coreCount = 1
    job.jobStatus = "defined"  # sets stateChangeTime to now: overwritten below to stay reproducible
    job.creationTime = datetime.datetime(2008, 10, 1, 12, 34, 56, 789000)
    job.stateChangeTime = datetime.datetime(2008, 10, 1, 12, 35, 0)
    job.creationHost = "lxplus001.cern.ch"
    files = [
        {"lfn": "EVNT.012345._00001.pool.root.1", "type": "input", "status": "ready",
         "dataset": "mc08.105001.pythia_minbias.evgen.EVNT.e349",
         "prodDBlock": "mc08.105001.pythia_minbias.evgen.EVNT.e349",
         "GUID": "6f1c5a3e-8f3a-4f5b-9d2c-1a2b3c4d5e6f", "fsize": 1234567, "checksum": "ad:0a1b2c3d",
         "scope": "mc08"},
        {"lfn": "user.jdoe.golden.$PANDAID.out.root", "type": "output", "dataset": "user.jdoe.golden.out",
         "destinationDBlock": "user.jdoe.golden.out", "destinationSE": "CLOUDA_T1", "scope": "user.jdoe"},
        {"lfn": "user.jdoe.golden.$PANDAID.log.tgz", "type": "log", "dataset": "user.jdoe.golden.log",
         "destinationDBlock": "user.jdoe.golden.log", "scope": "user.jdoe"},
    ]  # fmt: skip
    for attrs in files:
        file = FileSpec()
        for name, value in attrs.items():
            setattr(file, name, value)
        job.addFile(file)
    job2 = JobSpec()  # nearly empty: everything "NULL", no files
    job2.jobName = "user.jdoe.golden.2"
    job2.PandaID = 4242
    job2.maxCpuCount = 0
    return {
        "generated_by": f"panda-client {PandaToolsPkgInfo.release_version} via "
        "tests/interop/pandaclient_driver.py golden: MiscUtils.dump_jobs_json, "
        "JobSpec._attributes, FileSpec._attributes",
        "job_attributes": list(JobSpec._attributes),
        "file_attributes": list(FileSpec._attributes),
        "jobs_json": MiscUtils.dump_jobs_json([job, job2]),
    }


def run(command):
    op = command["op"]
    if op == "golden":
        return golden()
    from pandaclient import Client, PandaToolsPkgInfo

    out = {"op": op, "client_version": PandaToolsPkgInfo.release_version}
    if op == "hello":
        out["status"], out["message"] = Client.hello()
    elif op == "submit":
        out["status"], out["data"] = Client.submitJobs(build_jobs(command["jobs"]))
    elif op in ("status", "full_status"):
        call = Client.getJobStatus if op == "status" else Client.getFullJobStatus
        status, jobs = call(command["ids"])
        out["status"] = status
        out["jobs"] = None if jobs is None else [describe(j) for j in jobs]
    elif op == "kill":
        out["status"], out["data"] = Client.killJobs(command["ids"])
    else:
        raise SystemExit(f"unknown op {op!r}")
    return out


def main():
    text = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    command = json.loads(text)
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # the client prints logs and tracebacks
        result = run(command)
    json.dump(result, real_stdout, default=str)
    real_stdout.write("\n")


if __name__ == "__main__":
    main()
