"""python -m pilot.wrapper CONFIG: run (or recover) one job; the pilot reads the result file."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

from pilot import job as jobmod
from pilot import probes, workdir
from pilot.errors import PilotFailure
from pilot.wrapper import runjob


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pilot.wrapper CONFIG.json", file=sys.stderr)
        return 2
    cfg = workdir.read_json(Path(argv[0]))
    if not isinstance(cfg, dict):
        print(f"cannot read wrapper config {argv[0]}", file=sys.stderr)
        return 2
    jobdir = Path(cfg["jobdir"])
    fmt = "%(asctime)s wrapper PandaID=" + jobdir.name.split("-")[-1] + " %(levelname)s %(message)s"
    # to the pilot's stderr (its log) and to wrapper.log in the job dir (so into the log tarball)
    logging.basicConfig(level=logging.DEBUG if cfg.get("debug") else logging.INFO, format=fmt,
                        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(jobdir / "wrapper.log")])  # fmt: skip
    # The pilot asks for kills through KILL_REQUEST; a SIGTERM (batch system) becomes one too.
    signal.signal(signal.SIGTERM, lambda *_: workdir.request_kill(jobdir, 1201, "job wrapper got SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: workdir.request_kill(jobdir, 1208, "job wrapper got SIGINT"))
    try:
        job = jobmod.parse(workdir.read_json(jobdir / workdir.JOB_FILE) or {})
    except PilotFailure as exc:
        workdir.update_state(jobdir, phase="done", result={"state": "failed", "pilotErrorCode": exc.code,
                                                           "pilotErrorDiag": exc.diag, "xml": {}})  # fmt: skip
        return 0
    workdir.update_state(jobdir, PandaID=job.PandaID, attemptNr=job.attemptNr, queue=cfg["queuedata"]["nickname"],
                         phase="setup", wrapper_start=time.time())  # fmt: skip
    result = (
        runjob.recover(job, jobdir, cfg) if cfg.get("mode") == "recover" else runjob.run(job, jobdir, cfg)
    )
    workdir.update_state(jobdir, phase="done", result=result)
    logging.info("result %s pilotErrorCode=%s %s (wrapper peak RSS %d kB)", result["state"],
                 result["pilotErrorCode"], result["pilotErrorDiag"], probes.peak_rss_kb())  # fmt: skip
    return 0


sys.exit(main(sys.argv[1:]))
