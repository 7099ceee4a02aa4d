"""python -m pilot.wrapper CONFIG: run (or recover) one job; the pilot reads the result file."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

from pilot import job as jobmod
from pilot import probes, workdir
from pilot.errors import CAUGHT_SIGNALS, PilotFailure, signal_error
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
    # The pilot asks for kills through KILL_REQUEST; a signal (batch system, terminal) becomes one too.
    for signum in CAUGHT_SIGNALS:
        signal.signal(signum, lambda n, _f: workdir.request_kill(jobdir, signal_error(n), f"job wrapper got {signal.Signals(n).name}"))  # fmt: skip
    try:
        job = jobmod.parse(workdir.read_json(jobdir / workdir.JOB_FILE) or {})
    except PilotFailure as exc:
        workdir.update_state(jobdir, phase="done", result={"state": "failed", "pilotErrorCode": exc.code,
                                                           "pilotErrorDiag": exc.diag, "xml": {}})  # fmt: skip
        return 0
    recovering = cfg.get("mode") == "recover"
    if not recovering:  # a recovery keeps the phase it found, so a dying recovery can be retried
        workdir.update_state(jobdir, PandaID=job.PandaID, attemptNr=job.attemptNr,
                             queue=cfg["queuedata"]["nickname"], phase="setup", wrapper_start=time.time())  # fmt: skip
    try:
        result = runjob.recover(job, jobdir, cfg) if recovering else runjob.run(job, jobdir, cfg)
    except Exception as exc:  # a bug or a bad queue description: still a result the pilot can report
        logging.exception("job wrapper failed")
        result = {"state": "failed", "pilotErrorCode": 1301, "xml": workdir.read_state(jobdir).get("files") or {},
                  "pilotErrorDiag": f"job wrapper exception: {type(exc).__name__}: {exc}"[:500]}  # fmt: skip
    workdir.update_state(jobdir, phase="done", result=result)
    logging.info("result %s pilotErrorCode=%s %s (wrapper peak RSS %d kB)", result["state"],
                 result["pilotErrorCode"], result["pilotErrorDiag"], probes.peak_rss_kb())  # fmt: skip
    return 0


sys.exit(main(sys.argv[1:]))
