"""python -m pilot.wrapper CONFIG [--credential-socket NAME]: run (or recover) one job.

The pilot reads the result from the job's state file. With a concealed proxy the wrapper first
makes itself non-dumpable, then fetches the proxy's memfd from the pilot's socket NAME
(pilot.credentials); it never writes the proxy or its path anywhere. It is a child subreaper, so
that whatever the payload leaves behind stays its descendant and is killed (pilot.wrapper.payload).
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pilot import credentials, glexec, probes, workdir
from pilot import job as jobmod
from pilot.errors import CAUGHT_SIGNALS, PilotFailure, signal_error
from pilot.util import processes
from pilot.wrapper import runjob


def main(argv: list[str]) -> int:
    # first of all: nothing of this process may be readable by a same-uid process once it holds the proxy
    dumpable_off = credentials.set_non_dumpable()
    cfg = _config(argv)
    if cfg is None:
        return 2
    jobdir = Path(cfg["jobdir"])
    glexec.lock_down(jobdir)
    _logging(jobdir, cfg)
    # orphans of the payload come to this wrapper instead of init: it kills them when the payload ends
    if not processes.become_subreaper():
        logging.warning("cannot become a child subreaper: a payload process that leaves its session "
                        "before it is seen may outlive the job")  # fmt: skip
    # The pilot asks for kills through KILL_REQUEST; a signal (batch system, terminal) becomes one too.
    for signum in CAUGHT_SIGNALS:
        signal.signal(signum, lambda n, _f: workdir.request_kill(jobdir, signal_error(n), f"job wrapper got {signal.Signals(n).name}"))  # fmt: skip
    if len(argv) == 3 and not _receive_proxy(cfg, argv[2], dumpable_off):
        return 0
    try:
        job = jobmod.parse(workdir.read_json(jobdir / workdir.JOB_FILE) or {})
    except PilotFailure as exc:
        _fail(jobdir, exc.code, exc.diag)
        return 0
    result = _run(job, jobdir, cfg)
    workdir.update_state(jobdir, phase="done", result=result)
    logging.info("result %s pilotErrorCode=%s %s (wrapper peak RSS %d kB)", result["state"],
                 result["pilotErrorCode"], result["pilotErrorDiag"], probes.peak_rss_kb())  # fmt: skip
    return 0


def _config(argv: list[str]) -> dict[str, Any] | None:
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--credential-socket"):
        print("usage: python -m pilot.wrapper CONFIG.json [--credential-socket NAME]", file=sys.stderr)
        return None
    cfg = workdir.read_json(Path(argv[0]))
    if not isinstance(cfg, dict):
        print(f"cannot read wrapper config {argv[0]}", file=sys.stderr)
        return None
    return cfg


def _logging(jobdir: Path, cfg: dict[str, Any]) -> None:
    """To the pilot's stderr (its log) and to wrapper.log in the job dir (so into the log tarball)."""
    fmt = "%(asctime)s wrapper PandaID=" + jobdir.name.split("-")[-1] + " %(levelname)s %(message)s"
    logging.basicConfig(level=logging.DEBUG if cfg.get("debug") else logging.INFO, format=fmt,
                        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(jobdir / "wrapper.log")])  # fmt: skip


def _fail(jobdir: Path, code: int, diag: str) -> None:
    workdir.update_state(jobdir, phase="done", result={"state": "failed", "pilotErrorCode": code,
                                                       "pilotErrorDiag": diag, "xml": {}})  # fmt: skip


def _receive_proxy(cfg: dict[str, Any], socket_name: str, dumpable_off: bool) -> bool:
    """The concealed proxy from the pilot, in memory only, never written; False: the job failed (1163)."""
    try:
        if not dumpable_off:
            raise OSError("this process cannot be made non-dumpable")
        cfg["proxy"] = credentials.receive(socket_name).path
    except OSError as exc:
        diag = f"the job wrapper could not get the pilot's proxy: {exc}"
        logging.error(diag)
        _fail(Path(cfg["jobdir"]), 1163, diag)
        return False
    return True


def _run(job: jobmod.Job, jobdir: Path, cfg: dict[str, Any]) -> dict[str, Any]:
    recovering = cfg.get("mode") == "recover"
    if not recovering:  # a recovery keeps the phase it found, so a dying recovery can be retried
        workdir.update_state(jobdir, PandaID=job.PandaID, attemptNr=job.attemptNr,
                             queue=cfg["queuedata"]["nickname"], phase="setup", wrapper_start=time.time())  # fmt: skip
    try:
        return runjob.recover(job, jobdir, cfg) if recovering else runjob.run(job, jobdir, cfg)
    except Exception as exc:  # a bug or a bad queue description: still a result the pilot can report
        logging.exception("job wrapper failed")
        return {"state": "failed", "pilotErrorCode": 1301, "xml": workdir.read_state(jobdir).get("files") or {},
                "pilotErrorDiag": f"job wrapper exception: {type(exc).__name__}: {exc}"[:500]}  # fmt: skip


sys.exit(main(sys.argv[1:]))
