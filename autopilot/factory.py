"""One factory cycle: follow this factory's pilots, ask the server, decide per queue, submit, record.

The decisions are autopilot/policy.py's; this module only gathers what they need and carries
them out. Each step that writes is its own short transaction, so a failure in one queue's
submission costs that queue this cycle and nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import logging
import os
import shlex
import shutil
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import Engine

from autopilot import pandaview, pilotcode, tracking
from autopilot.policy import Decision, QueueView, capped, decide
from autopilot.proxy import proxy_problem
from autopilot.submitters import make_submitter
from autopilot.submitters.base import BatchCommandError, PilotBatch, SubmitError, Submitter, queue_environ
from panda_server.settings import ROOT, Settings
from schedconfig.model import QueueSpec
from schedconfig.sync import read_queues

log = logging.getLogger("panda.autopilot")

WRAPPER = Path(__file__).resolve().parent / "wrapper.sh"
UNASKABLE = 3600  # seconds a batch system may fail to answer before its pilots count as lost


@dataclasses.dataclass
class QueueReport:
    nickname: str
    system: str
    view: QueueView | None
    decision: Decision
    submitted: list[str] = dataclasses.field(default_factory=list)
    error: str = ""


@dataclasses.dataclass
class CycleReport:
    cycle: int
    queues: list[QueueReport]
    changes: int = 0  # pilot state changes seen
    problem: str = ""  # why nothing was submitted (server, proxy)

    def summary(self) -> str:
        submitted = sum(len(q.submitted) for q in self.queues)
        errors = sum(1 for q in self.queues if q.error)
        text = f"cycle {self.cycle}: {len(self.queues)} queues, {submitted} pilots submitted, {self.changes} changes"
        return text + (f", {errors} errors" if errors else "") + (f"; {self.problem}" if self.problem else "")


class Factory:
    def __init__(
        self, settings: Settings, engine: Engine, *, submitters: dict[str, Submitter] | None = None
    ) -> None:
        self.settings, self.engine = settings, engine
        self.name = settings.autopilot_id
        self.logs = settings.autopilot_dir / "logs"
        self.submitters: dict[str, Submitter] = dict(submitters or {})
        self.cycle = 0
        self._batches = 0
        self._code: tuple[str, str] | None = None

    # ---------------------------------------------------------------- the cycle

    def run_cycle(self, now: dt.datetime, *, only: Iterable[str] = (), dry_run: bool = False) -> CycleReport:
        only = set(only)
        with self.engine.connect() as conn:  # a broken row costs its queue, not the cycle
            queues = [q for q in read_queues(conn, on_error=lambda e: log.error("queue skipped: %s", e))
                      if not only or q.nickname in only]  # fmt: skip
        report = CycleReport(self.cycle, [])
        if not dry_run:
            report.changes = self.poll(now)
            self.clean_logs(now)
        try:
            panda = pandaview.fetch(self.settings.url)
        except pandaview.PandaUnavailable as exc:
            panda, report.problem = None, f"server not asked: {exc}"
        problem = proxy_problem(self.settings.autopilot_proxy_path, now)
        if problem and problem.fatal:
            report.problem = problem.text
        elif problem:
            log.warning("%s", problem.text)
        with self.engine.connect() as conn:  # live pilots, and those ended in the last day (schedinstance)
            mine = tracking.counts(conn, self.name, ended_since=now - dt.timedelta(days=1))
        room = self._factory_room(mine)
        for q in queues:
            qr = self._queue(
                q, panda, mine.get(q.nickname, {}), room, now, dry_run=dry_run, hold=report.problem
            )
            room = None if room is None else room - len(qr.submitted)
            report.queues.append(qr)
        self.cycle += 1
        return report

    def _queue(self, q: QueueSpec, panda: pandaview.PandaState | None, pilots: dict[str, int], room: int | None,
               now: dt.datetime, *, dry_run: bool, hold: str = "") -> QueueReport:  # fmt: skip
        """One queue's decision, carried out unless dry_run or `hold` (why nothing may be submitted)."""
        system = self.settings.autopilot_submitter or q.system
        if panda is None:
            return QueueReport(q.nickname, system, None, Decision(0, "server not asked"))
        view = QueueView(queue_status=q.status, cloud_status=panda.clouds.get(q.cloud, "online"), nqueue=q.nqueue,
                         depthboost=q.depthboost, idlepilotsuppression=q.idlepilotsuppression,
                         pilotlimit=q.pilotlimit, transferringlimit=q.transferringlimit,
                         activated=panda.count(q.siteid, "activated"), transferring=panda.count(q.siteid, "transferring"),
                         inactive=pilots.get("submitted", 0) + pilots.get("queued", 0), active=pilots.get("running", 0),
                         cycle=self.cycle)  # fmt: skip
        d = capped(decide(view), view, max_per_cycle=self.settings.autopilot_max_per_cycle, factory_room=room)
        qr = QueueReport(q.nickname, system, view, d)
        try:  # whatever goes wrong here costs this queue this cycle, not the others
            if d.n > 0 and hold:
                qr.error = f"not submitted: {hold}"
            elif d.n > 0 and not dry_run:
                self._submit(q, system, d.n, qr, now)
            if not dry_run:
                self._note(q, view, qr, pilots, now)
        except Exception as exc:
            log.exception("%s: cycle step failed", q.nickname)
            qr.error = qr.error or f"{type(exc).__name__}: {exc}"
        log.info("%s (%s): %d pilots: %s%s", q.nickname, system, len(qr.submitted), d.reason,
                 f"; error: {qr.error}" if qr.error else "")  # fmt: skip
        return qr

    def _submit(self, q: QueueSpec, system: str, n: int, qr: QueueReport, now: dt.datetime) -> None:
        try:
            submitter = self.submitter(system)
            batch = self.batch(q, n, now)
        except (ValueError, OSError) as exc:
            qr.error = str(exc)
            return
        # recorded before they go in: pilots the batch system got are never untracked, even if
        # this process dies right after; the rows get their batch ids once the submitter answers
        with self.engine.begin() as conn:
            tracking.record(conn, batch, factory=self.name, system=system, submithost=socket.gethostname(),
                            user=getpass.getuser(), now=now)  # fmt: skip
        try:
            qr.submitted = submitter.submit(batch)
        except (SubmitError, BatchCommandError, ValueError, OSError) as exc:
            qr.submitted, qr.error = list(getattr(exc, "submitted", [])), str(exc)
        with self.engine.begin() as conn:
            tracking.confirm(conn, batch, qr.submitted)

    def _note(
        self, q: QueueSpec, view: QueueView, qr: QueueReport, ended: dict[str, int], now: dt.datetime
    ) -> None:
        reason = qr.decision.reason + (f"; error: {qr.error}" if qr.error else "")
        with self.engine.begin() as conn:
            tracking.note_queue(conn, self.name, q.nickname, {
                "pandasite": q.siteid, "nqueue": len(qr.submitted), "nqueued": view.inactive, "nrunning": view.active,
                "ndone": ended.get("done", 0), "nfailed": ended.get("failed", 0),
                "naborted": ended.get("lost", 0), "njobs": view.activated, "errinfo": reason}, now)  # fmt: skip

    def _factory_room(self, mine: dict[str, dict[str, int]]) -> int | None:
        if not self.settings.autopilot_max_pilots:
            return None
        live = sum(n for states in mine.values() for state, n in states.items() if state in tracking.LIVE)
        return self.settings.autopilot_max_pilots - live

    # ---------------------------------------------------------------- following the pilots

    def poll(self, now: dt.datetime) -> int:
        """Ask each batch system about this factory's live pilots and move their rows; link jobs."""
        with self.engine.connect() as conn:
            rows = tracking.live(conn, self.name)
        changes = 0
        for system in sorted({r.system for r in rows}):
            mine = [r for r in rows if r.system == system]
            try:
                seen = self.submitter(system).status([r.jobid for r in mine if r.jobid])
            except (BatchCommandError, ValueError, OSError) as exc:
                log.error("cannot ask %s about %d pilots: %s", system, len(mine), exc)
                changes += self._unaskable(mine, system, str(exc), now)
                continue
            with self.engine.begin() as conn:
                for r in mine:
                    new = tracking.next_state(r.state, seen.get(r.jobid), self._reported_exit(r),
                                              unseen_for=(now - r.tsubmit).total_seconds(),
                                              grace=self.settings.autopilot_lost_grace, system=system)  # fmt: skip
                    if new is not None and tracking.change(conn, r, new, now):
                        changes += 1
                        log.info("pilot %s (%s %s) at %s: %s → %s%s", r.tpid, system, r.jobid, r.nickname, r.state,
                                 new.state, f" ({new.errinfo})" if new.errinfo else "")  # fmt: skip
                tracking.checked(conn, [r.tpid for r in mine], now)
        with self.engine.begin() as conn:
            tracking.link_jobs(conn, self.name, since=now - dt.timedelta(days=1))
        return changes

    def _unaskable(self, rows: list, system: str, why: str, now: dt.datetime) -> int:
        """Pilots whose batch system has not answered for UNASKABLE seconds are lost: they must not
        hold their queue's counts (nqueue, pilotlimit) for ever."""
        changes = 0
        with self.engine.begin() as conn:
            for r in rows:
                if (now - (r.tcheck or r.tsubmit)).total_seconds() > UNASKABLE:
                    info = f"{system} could not be asked for {UNASKABLE // 60} min: {why}"
                    changes += tracking.change(conn, r, tracking.Change("lost", None, info), now)
        return changes

    def _reported_exit(self, row) -> int | None:
        path = self.log_dir(row.tsubmit, row.nickname) / f"{row.tpid}.rc"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    # ---------------------------------------------------------------- batches

    def submitter(self, system: str) -> Submitter:
        if system not in self.submitters:
            self.submitters[system] = make_submitter(system)
        return self.submitters[system]

    def log_dir(self, when: dt.datetime, nickname: str) -> Path:
        return self.logs / f"{when:%Y-%m-%d}" / nickname

    def batch(self, q: QueueSpec, n: int, now: dt.datetime) -> PilotBatch:
        """n pilots for queue q: names, log places and the wrapper's arguments and environment."""
        s = self.settings
        self._batches += 1
        name = f"tp_{socket.gethostname().split('.')[0]}_{os.getpid()}_{now:%Y%m%d-%H%M%S}_{self._batches}"
        env = {**queue_environ(q), "PANDA_JSID": self.name, "APFFID": self.name, "FACTORYQUEUE": q.nickname,
               "FACTORYUSER": getpass.getuser(), "X509_USER_PROXY": str(s.autopilot_proxy_path),
               "X509_CERT_DIR": str(s.ca_dir), "PILOT_PYTHON": s.autopilot_pilot_python or sys.executable}  # fmt: skip
        if s.autopilot_pilot_workdir:
            env["PILOT_WORKDIR"] = s.autopilot_pilot_workdir
        if s.autopilot_fetch_pilot:
            url, sha = self.pilot_code()
            env.update(PILOT_CODE_URL=url, PILOT_CODE_SHA256=sha)
        else:
            env["PILOT_HOME"] = str(ROOT)
        wrapper = Path(s.autopilot_wrapper) if s.autopilot_wrapper else self._packaged_wrapper()
        args = ("-q", q.nickname, "-w", s.url_ssl, "--", *shlex.split(s.autopilot_pilot_args))
        return PilotBatch(queue=q, name=name, count=n, log_dir=self.log_dir(now, q.nickname),
                          log_url=f"{s.autopilot_log_base}/{now:%Y-%m-%d}/{q.nickname}", executable=wrapper,
                          arguments=args, environment=env, proxy=s.autopilot_proxy_path)  # fmt: skip

    def _packaged_wrapper(self) -> Path:
        """wrapper.sh as installed; a copy with its execute bit when the install dropped it (made
        once per process and renamed into place, so no starting wrapper reads a half-written one)."""
        if os.access(WRAPPER, os.X_OK):
            return WRAPPER
        copy = self.settings.autopilot_dir / f"wrapper-{os.getpid()}.sh"
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = copy.with_suffix(".tmp")
            tmp.write_bytes(WRAPPER.read_bytes())
            tmp.chmod(0o755)
            os.replace(tmp, copy)
        return copy

    def pilot_code(self) -> tuple[str, str]:
        """(URL, sha256) of the pilot tarball the log server serves; built once per factory process."""
        if self._code is None:
            _, sha = pilotcode.build(self.logs)
            self._code = (f"{self.settings.autopilot_log_base}/{pilotcode.NAME}", sha)
        return self._code

    def clean_logs(self, now: dt.datetime) -> int:
        """Remove the dated log directories older than autopilot_log_days."""
        removed = 0
        cutoff = (now - dt.timedelta(days=self.settings.autopilot_log_days)).date()
        with self.engine.connect() as conn:  # never the logs of a pilot that still runs
            oldest = tracking.oldest_live(conn, self.name)
        if oldest is not None:
            cutoff = min(cutoff, oldest.date())
        for d in self.logs.glob("????-??-??") if self.logs.is_dir() else []:
            try:
                day = dt.date.fromisoformat(d.name)
            except ValueError:
                continue
            if day < cutoff:
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        return removed
