"""The unmodified PyPI panda-client 2.2.0 submits, looks up and kills jobs on our server.

The client runs in its own venv (``<repo>/var/test-cache/pcvenv``, created once and reused)
through ``pandaclient_driver.py``, against the session's real gunicorn over mutual TLS with the
user's RFC 3820 proxy (``PANDA_AUTH=x509_no_grid``), exactly as a user's shell would set it up.
Every client call is a subprocess bounded by a timeout. Assertions compare what the client
got with what our database holds.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from panda_server import ca, pki_voms
from panda_server.db import tables as t

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = ROOT / "var" / "test-cache" / "pcvenv"
DRIVER = Path(__file__).resolve().parent / "pandaclient_driver.py"
CLIENT_VERSION = "2.2.0"
INSTALL_TIMEOUT = 600  # s, venv + pip install (first run only)
CALL_TIMEOUT = 120  # s, one client call (the client itself waits up to 600 s per request)

USER_DN = "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
OTHER_DN = "/DC=org/DC=pandawms/OU=Users/CN=John Roe"
SITE = "CLOUDA_T1"
UNKNOWN_ID = 987654321
ACTIVE_TABLES = ("jobsdefined4", "jobswaiting4", "jobsactive4")


# --- the panda-client venv ------------------------------------------------------------------


def _installed_version(python: Path) -> str | None:
    if not python.exists():
        return None
    probe = "from pandaclient import PandaToolsPkgInfo as p; print(p.release_version)"
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_client_venv(venv: Path = VENV) -> Path:
    """The python of a venv holding panda-client==2.2.0; created with venv + pip on first use."""
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "pcvenv.lock", "w") as lock:  # parallel sessions build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version(python) == CLIENT_VERSION:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"panda-client=={CLIENT_VERSION}"],
        ]  # fmt: skip
        for cmd in steps:
            env = {
                k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
            }
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        version = _installed_version(python)
        if version != CLIENT_VERSION:
            raise RuntimeError(f"{venv} holds panda-client {version!r}, not {CLIENT_VERSION}")
        return python


@pytest.fixture(scope="session")
def client_python() -> Path:
    return ensure_client_venv()


# --- running the client ---------------------------------------------------------------------


class PandaClient:
    """Runs pandaclient_driver.py in the client's venv with one user's proxy."""

    def __init__(self, python: Path, server, proxy: Path, nickname: str, home: Path) -> None:
        self.python, self.server, self.proxy, self.nickname, self.home = python, server, proxy, nickname, home

    def env(self) -> dict[str, str]:
        # a clean environment: nothing of ours (VIRTUAL_ENV, PYTHONPATH, PANDA_* of the server) leaks in
        ssl_url = f"{self.server.https_url}/server/panda"
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8",
            "PANDA_URL_SSL": ssl_url, "PANDA_URL": f"{self.server.http_url}/server/panda",
            "PANDACACHE_URL": ssl_url, "PANDA_BEHIND_REAL_LB": "1", "PANDA_CONFIG_ROOT": str(self.home / ".pathena"),
            "PANDA_AUTH": "x509_no_grid", "PANDA_NICKNAME": self.nickname,
            "X509_USER_PROXY": str(self.proxy), "X509_CERT_DIR": str(self.server.ca_dir),
        }  # fmt: skip

    def __call__(self, op: str, **args: Any) -> dict[str, Any]:
        command = json.dumps({"op": op, **args}, default=_json_default)
        try:
            done = subprocess.run([str(self.python), str(DRIVER)], input=command, capture_output=True,
                                  text=True, timeout=CALL_TIMEOUT, env=self.env(), cwd=self.home)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"panda-client {op} did not finish in {CALL_TIMEOUT} s; stderr:\n{exc.stderr}")
        if done.returncode != 0:
            pytest.fail(f"panda-client {op} exited {done.returncode}; stderr:\n{done.stderr[-4000:]}")
        try:
            reply = json.loads(done.stdout, object_hook=_json_hook)
        except ValueError:
            pytest.fail(f"panda-client {op} printed no JSON: {done.stdout!r}\nstderr:\n{done.stderr[-4000:]}")
        reply["stderr"] = done.stderr
        return reply


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"__datetime__": value.isoformat()}
    raise TypeError(type(value).__name__)


def _json_hook(obj: dict[str, Any]) -> Any:
    if "__datetime__" in obj:
        return dt.datetime.fromisoformat(obj["__datetime__"])
    return obj


def mint_user_proxy(pki, dn: str, path: Path) -> Path:
    """A second user: a certificate from the test CA for `dn`, and its RFC 3820 VOMS proxy (/atlas)."""
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    cert = next(
        c
        for c in x509.load_pem_x509_certificates(pki.ca_cert.read_bytes())
        if c.public_key() == key.public_key()
    )
    user = ca.Authority(cert, key).issue(dn, kind="user")
    voms = ca.load_credential(pki.vomscert, pki.vomskey)
    proxy = pki_voms.make_voms_proxy(user, voms, vo=ca.VO, fqans=["/atlas"], uri=ca.VOMS_URI, hours=2)
    ca.write_proxy_file(proxy, path)
    return path


@pytest.fixture
def jane(client_python, live, tmp_path) -> PandaClient:
    home = tmp_path / "jane"
    home.mkdir()
    return PandaClient(client_python, live, live.pki.user_proxy, "jdoe", home)


@pytest.fixture
def john(client_python, live, tmp_path) -> PandaClient:
    home = tmp_path / "john"
    home.mkdir()
    proxy = mint_user_proxy(live.pki, OTHER_DN, tmp_path / "john.proxy")
    return PandaClient(client_python, live, proxy, "jroe", home)


# --- helpers --------------------------------------------------------------------------------


def user_job(tag: str, *, with_output: bool = False) -> dict[str, Any]:
    """A user job as pathena built them: a site, a log file whose lfn carries $PANDAID."""
    name = f"user.jdoe.interop.{tag}.{uuid.uuid4().hex[:8]}"
    files = [{"lfn": f"{name}.$PANDAID.log.tgz", "type": "log", "dataset": f"{name}.log",
              "destinationDBlock": f"{name}.log", "destinationSE": SITE, "scope": "user.jdoe",
              "GUID": str(uuid.uuid4())}]  # fmt: skip
    if with_output:
        files.append({"lfn": f"{name}.$PANDAID.out.root", "type": "output", "dataset": f"{name}.out",
                      "destinationDBlock": f"{name}.out", "destinationSE": SITE, "scope": "user.jdoe",
                      "GUID": str(uuid.uuid4())})  # fmt: skip
    attrs = {"jobName": name, "transformation": "/bin/echo", "jobParameters": f"hello {tag}",
             "prodSourceLabel": "user", "computingSite": SITE, "destinationSE": SITE, "cloud": "CLOUDA",
             "AtlasRelease": "Atlas-14.2.20", "maxCpuCount": 3600, "prodDBlock": "NULL",
             "destinationDBlock": f"{name}.log"}  # fmt: skip
    return {"attrs": attrs, "files": files}


def db_job(engine, panda_id: int) -> tuple[str, dict[str, Any]] | None:
    """(table, row) of a job, wherever it is."""
    with engine.connect() as conn:
        for name, table in t.JOB_TABLE.items():
            row = conn.execute(sa.select(table).where(table.c.PandaID == panda_id)).mappings().first()
            if row is not None:
                return name, dict(row)
    return None


def db_files(engine, panda_id: int) -> list[dict[str, Any]]:
    f = t.filestable4
    with engine.connect() as conn:
        rows = conn.execute(sa.select(f).where(f.c.PandaID == panda_id).order_by(f.c.rowID)).mappings()
        return [dict(r) for r in rows]


def submit(client: PandaClient, *jobs: dict[str, Any]) -> list[int]:
    reply = client("submit", jobs=list(jobs))
    assert reply["status"] == 0, reply["stderr"]
    data = reply["data"]
    assert isinstance(data, list) and len(data) == len(jobs), data
    for entry in data:  # S25 job/submit: [PandaID, jobDefinitionID, {"jobsetID": ...}] per job
        assert isinstance(entry[0], int) and entry[0] > 0, data
    return [entry[0] for entry in data]


def assert_matches_db(engine, got: dict[str, Any], panda_id: int) -> None:
    """A JobSpec as the client rebuilt it (load_from_dict) agrees with our DB row and files."""
    assert got is not None, f"the client got no JobSpec for {panda_id}"
    assert got["class"] == "pandaclient.JobSpec.JobSpec"
    where = db_job(engine, panda_id)
    assert where is not None
    _, row = where
    a = got["attrs"]
    for name in ("PandaID", "jobDefinitionID", "jobStatus", "computingSite", "prodUserID", "jobName",
                 "prodSourceLabel", "transformation", "currentPriority", "attemptNr", "creationTime",
                 "stateChangeTime", "cloud", "maxCpuCount"):  # fmt: skip
        assert a[name] == row[name], f"{name}: client {a[name]!r} != DB {row[name]!r}"
    assert isinstance(a["creationTime"], dt.datetime)  # {"__datetime__"} decoded by the client
    assert a["schedulerID"] == "NULL"  # unset values read as "NULL" in pandaclient
    files = db_files(engine, panda_id)
    assert len(got["Files"]) == len(files)
    for gf, df in zip(got["Files"], files, strict=True):
        assert gf["class"] == "pandaclient.FileSpec.FileSpec"
        for name in ("lfn", "type", "dataset", "scope", "GUID", "destinationDBlock"):
            assert gf["attrs"][name] == df[name], f"file {name}: {gf['attrs'][name]!r} != {df[name]!r}"
        assert gf["attrs"]["PandaID"] == panda_id  # via the file's owner, as in pandaclient


# --- tests ----------------------------------------------------------------------------------


def test_hello(jane):
    reply = jane("hello")
    assert reply["client_version"] == CLIENT_VERSION
    assert reply["status"] == 0, reply


def test_submit_status_kill(jane, live, engine):
    jobs = [user_job("a"), user_job("b", with_output=True)]
    ids = submit(jane, *jobs)
    assert len(set(ids)) == 2

    # stored as defined jobs of the proxy's owner, $PANDAID substituted in the lfns
    for panda_id, job in zip(ids, jobs, strict=True):
        table, row = db_job(engine, panda_id)
        assert (table, row["jobStatus"]) == ("jobsdefined4", "defined")
        assert row["prodUserID"] == USER_DN
        assert row["computingSite"] == SITE and row["prodSourceLabel"] == "user"
        assert row["jobName"] == job["attrs"]["jobName"]
        lfns = {f["lfn"] for f in db_files(engine, panda_id)}
        want = {f["lfn"].replace("$PANDAID", f"{panda_id:05d}") for f in job["files"]}
        assert lfns == want
        assert all("$PANDAID" not in lfn and str(panda_id) in lfn for lfn in lfns)

    # getJobStatus: pandaclient JobSpecs equal to the DB, None for an unknown id
    reply = jane("status", ids=[*ids, UNKNOWN_ID])
    assert reply["status"] == 0, reply["stderr"]
    assert len(reply["jobs"]) == 3 and reply["jobs"][2] is None
    for panda_id, got in zip(ids, reply["jobs"][:2], strict=True):
        assert_matches_db(engine, got, panda_id)
        assert got["attrs"]["jobStatus"] == "defined"
        assert got["attrs"]["prodUserID"] == USER_DN
        assert len(got["Files"]) == len(jobs[ids.index(panda_id)]["files"])

    # killJobs: a defined job is cancelled at once and archived
    reply = jane("kill", ids=[ids[0]])
    assert reply["status"] == 0, reply["stderr"]
    assert reply["data"] == [True]
    table, row = db_job(engine, ids[0])
    assert (table, row["jobStatus"]) == ("jobsarchived4", "cancelled")
    assert db_job(engine, ids[1])[1]["jobStatus"] == "defined"  # the other one untouched
    assert {f["status"] for f in db_files(engine, ids[0])} == {"cancelled"}

    # a killed job is no longer killable
    assert jane("kill", ids=[ids[0]])["data"] == [False]

    # getJobStatus looks at the live tables only; getFullJobStatus includes the archive
    reply = jane("status", ids=[ids[0], ids[1]])
    assert reply["jobs"][0] is None
    assert_matches_db(engine, reply["jobs"][1], ids[1])
    reply = jane("full_status", ids=[ids[0], ids[1], UNKNOWN_ID])
    assert reply["status"] == 0, reply["stderr"]
    assert reply["jobs"][2] is None
    assert_matches_db(engine, reply["jobs"][0], ids[0])
    assert reply["jobs"][0]["attrs"]["jobStatus"] == "cancelled"
    assert isinstance(reply["jobs"][0]["attrs"]["endTime"], dt.datetime)
    assert_matches_db(engine, reply["jobs"][1], ids[1])


def test_kill_refused_for_another_users_job(jane, john, live, engine):
    (johns,) = submit(john, user_job("john"))
    table, row = db_job(engine, johns)
    assert (table, row["jobStatus"], row["prodUserID"]) == ("jobsdefined4", "defined", OTHER_DN)

    reply = jane("kill", ids=[johns, UNKNOWN_ID])
    assert reply["status"] == 0, reply["stderr"]
    assert reply["data"] == [False, False]
    assert db_job(engine, johns) == (table, row)  # untouched

    # John sees his job through the client and may kill it himself
    got = john("status", ids=[johns])["jobs"][0]
    assert_matches_db(engine, got, johns)
    assert got["attrs"]["prodUserID"] == OTHER_DN
    assert john("kill", ids=[johns])["data"] == [True]
    assert db_job(engine, johns)[1]["jobStatus"] == "cancelled"
