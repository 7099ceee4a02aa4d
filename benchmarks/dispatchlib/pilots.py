"""The simulated pilots: getJob → updateJob starting → running → finished over keep-alive mTLS.

Stdlib only (or requests, with --http-lib requests): these run in spawned processes.
The form fields are the ones pilot 3.7 sends (shared/reference/pilot.md §3.2 and §3.5).
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from .common import CALLS, CPU_UNIT, MAX_CONSECUTIVE_ERRORS, PILOT_ID, PILOT_VERSION, REQUEST_TIMEOUT, stamp
from .workers import WorkerRun


class _HttpClient:
    """One keep-alive HTTPS connection with the pilot proxy as client certificate (http.client)."""

    def __init__(self, host: str, port: int, ca_dir: str, proxy: str) -> None:
        import http.client
        import ssl

        self._http = http.client
        self.host, self.port = host, port
        self.ctx = ssl.create_default_context(capath=ca_dir)
        self.ctx.load_cert_chain(proxy)  # proxy file: cert + key + user cert (feasibility §5)
        self.conn = None

    def _connection(self):
        if self.conn is None:
            self.conn = self._http.HTTPSConnection(
                self.host, self.port, context=self.ctx, timeout=REQUEST_TIMEOUT
            )
        return self.conn

    def post(self, path: str, body: str, headers: dict[str, str]) -> tuple[int, bytes]:
        conn = self._connection()
        try:
            conn.request("POST", path, body=body.encode(), headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self.close()
            return resp.status, data
        except Exception:
            self.close()
            raise

    def get(self, path: str) -> tuple[int, bytes]:
        conn = self._connection()
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class _RequestsClient:
    """The same over a requests.Session (what RunningServer.session gives)."""

    def __init__(self, host: str, port: int, ca_dir: str, proxy: str) -> None:
        import requests

        self.base = f"https://{host}:{port}"
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.verify = ca_dir
        self.s.cert = proxy

    def post(self, path: str, body: str, headers: dict[str, str]) -> tuple[int, bytes]:
        r = self.s.post(self.base + path, data=body, headers=headers, timeout=REQUEST_TIMEOUT)
        return r.status_code, r.content

    def get(self, path: str) -> tuple[int, bytes]:
        r = self.s.get(self.base + path, timeout=REQUEST_TIMEOUT)
        return r.status_code, r.content

    def close(self) -> None:
        self.s.close()


def pilot_config(args, https_port: int, pki, n_warm: int) -> dict[str, Any]:
    """What each pilot needs (picklable, for spawned processes)."""
    return {"host": "127.0.0.1", "port": https_port, "ca_dir": str(pki.ca_dir),
            "proxy": str(pki.pilot_proxy), "site": args.site, "duration": args.duration,
            "warmup": args.warmup, "max_lifecycles": args.jobs + n_warm + 1,
            "http_lib": args.http_lib}  # fmt: skip


def _getjob_fields(site: str, node: str) -> dict[str, str]:
    return {"siteName": site, "computingElement": site, "prodSourceLabel": "managed", "diskSpace": "20000",
            "workingGroup": "", "cpu": "2596.122", "mem": "24105.55859375", "node": node,
            "allowOtherCountry": "False"}  # fmt: skip


def _common_fields(job: dict[str, Any], site: str, node: str) -> dict[str, Any]:
    """The fields every updateJob of this job carries."""
    return {"jobId": job["PandaID"], "siteName": site, "node": node, "attemptNr": job.get("attemptNr", "1"),
            "schedulerID": "unknown", "pilotID": PILOT_ID, "startTime": f"{time.time():.2f}",
            "coreCount": "1", "cpuConsumptionUnit": CPU_UNIT,
            "cpu_architecture_level": "x86-64-v3"}  # fmt: skip


def _update_fields(common: dict[str, Any], state: str, job: dict[str, Any]) -> dict[str, Any]:
    """updateJob fields for `state`; the final one carries a small JSON `xml` file report."""
    fields = {**common, "state": state, "timestamp": stamp()}
    if state == "running":
        fields.update(cpuConsumptionTime="1", cpuConversionFactor="1.0", meanCoreCount="1.0",
                      jobMetrics="coreCount=1 workDirSize=4096")  # fmt: skip
    elif state == "finished":
        log_file = job.get("logFile") or f"log.{job['PandaID']}.job.log.tgz"
        xml = json.dumps({log_file: {"guid": job.get("logGUID") or str(uuid.uuid4()), "fsize": 8035,
                                     "adler32": "eabec616",
                                     "surl": f"file://localhost/bench/se/{log_file}"}})  # fmt: skip
        fields.update(cpuConsumptionTime="2", cpuConversionFactor="1.0", xml=xml, pilotTiming="0|0|1|0|1|0",
                      pilotLog="", endTime=f"{time.time():.2f}", pilotErrorCode="0", pilotErrorDiag="",
                      transExitCode="0", exeErrorCode="0", exeErrorDiag="", nEvents="10",
                      jobMetrics="coreCount=1 nEvents=10 workDirSize=4096")  # fmt: skip
    return fields


class _Pilot:
    """One simulated pilot: its connection, its requests, and the outcome of each lifecycle."""

    def __init__(self, cfg: dict[str, Any], index: int, run: WorkerRun) -> None:
        self.cfg, self.run, self.result = cfg, run, run.result
        self.site, self.node = cfg["site"], f"benchnode-{index:03d}"
        self.headers = {"User-Agent": f"pilot/{PILOT_VERSION} (Python {platform.python_version()}; Linux x86_64)",
                        "Accept": "application/json",
                        "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        self.client: Any = None
        self.consecutive = 0

    def connect(self) -> None:
        """Open the connection: the TLS handshake stays outside the timed window."""
        cls = _RequestsClient if self.cfg["http_lib"] == "requests" else _HttpClient
        self.client = cls(self.cfg["host"], self.cfg["port"], self.cfg["ca_dir"], self.cfg["proxy"])
        status, _ = self.client.get("/server/panda/isAlive")
        if status != 200:
            self.run.error(f"isAlive: HTTP {status}")

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()

    def call(self, kind: str, method: str, fields: dict[str, Any], timed: bool) -> dict[str, Any] | None:
        """The decoded JSON reply, or None (an error, counted)."""
        body = urlencode(fields)
        t0 = time.perf_counter()
        try:
            status, data = self.client.post(f"/server/panda/{method}", body, self.headers)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            self.run.error(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        elapsed = time.perf_counter() - t0
        if timed:
            self.result["lat"][kind].append(elapsed)
            self.result["getjob_calls" if kind == "getJob" else "update_calls"] += 1
        if status != 200:
            self.run.error(f"{kind}: HTTP {status}: {data[:200]!r}")
            return None
        try:
            return json.loads(data)
        except ValueError:
            self.run.error(f"{kind}: not JSON: {data[:200]!r}")
            return None

    def update(self, state: str, fields: dict[str, Any], timed: bool) -> bool:
        """One updateJob; True if the server accepted it and sent no command."""
        reply = self.call(state, "updateJob", fields, timed)
        if reply is None:
            return False
        if str(reply.get("StatusCode")) != "0" or reply.get("command") not in ("NULL", None):
            self.run.error(f"updateJob {state} PandaID={fields['jobId']}: {str(reply)[:200]}")
            return False
        return True

    def lifecycle(self, timed: bool) -> str:
        """'done' (a full lifecycle), 'empty' (no jobs left) or 'error'."""
        job = self.call("getJob", "getJob", _getjob_fields(self.site, self.node), timed)
        if job is None:
            return "error"
        code = str(job.get("StatusCode"))
        if code == "20":
            return "empty"
        if code != "0" or "PandaID" not in job:
            self.run.error(f"getJob: StatusCode={code} {str(job)[:200]}")
            return "error"
        common = _common_fields(job, self.site, self.node)
        for state in CALLS[1:]:
            if not self.update(state, _update_fields(common, state, job), timed):
                return "error"
        return "done"

    def step(self) -> bool:
        """One timed lifecycle; False when the pilot should stop."""
        outcome = self.lifecycle(timed=True)
        if outcome == "empty":
            return False
        if outcome == "done":
            self.result["lifecycles"] += 1
            self.consecutive = 0
            return True
        self.consecutive += 1
        if self.consecutive >= MAX_CONSECUTIVE_ERRORS:
            self.run.error("too many consecutive errors; pilot stops")
            return False
        return True


def pilot_main(cfg: dict[str, Any], index: int, barrier: Any, out: Any, release: Any) -> None:
    """One simulated pilot; puts one result dict on `out`. Runs in a thread or a process."""
    run = WorkerRun(cfg, index, "pilot", lat={c: [] for c in CALLS}, warmup=0, getjob_calls=0, update_calls=0)
    pilot = _Pilot(cfg, index, run)
    try:
        pilot.connect()
        for _ in range(cfg["warmup"]):
            if pilot.lifecycle(timed=False) == "done":
                run.result["warmup"] += 1
        run.timed_loop(barrier, pilot.step)
    except Exception as exc:  # noqa: BLE001 - reported, never hangs the run
        run.error(f"pilot crashed: {type(exc).__name__}: {exc}")
        run.release_others(barrier)
    finally:
        pilot.close()
        out.put(run.result)
