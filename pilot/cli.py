"""panda-pilot: the command-line entry point (also `python -m pilot`)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence

from pilot import VERSION, config, credentials, errors, glexec, infosys, lifecycle, probes, workdir
from pilot.context import PilotContext
from pilot.errors import PilotFailure
from pilot.server import Server

log = logging.getLogger("pilot")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = config.parse(argv)
    home = cfg.workdir.resolve() / f"{workdir.PILOT_HOME_PREFIX}{os.getpid()}_{int(time.time())}"
    home.mkdir(parents=True, mode=0o711)  # others (a switched payload) may pass, not list
    _logging(home, cfg.debug)
    log.info("PanDA-WMS pilot %s for queue %s, server %s, home %s", VERSION, cfg.queue, cfg.url, home)
    credential = _credential(cfg)
    if credential is None:
        return errors.exit_code(1163)
    server = Server(cfg.url, proxy=credential.path, ca_dir=cfg.ca_dir)
    try:
        queuedata = infosys.queuedata(cfg.queuedata_source, cfg.queue, server.http)
        ddmconf = infosys.ddmendpoints(cfg.storagedata_source, server.http)
    except PilotFailure as exc:
        print(f"pilot: cannot run for queue {cfg.queue}: {exc}", file=sys.stderr, flush=True)
        return errors.exit_code(exc.code)
    _warn_about_queue(cfg, queuedata)
    ctx = PilotContext(cfg=cfg, server=server, queuedata=queuedata, ddmconf=ddmconf, home=home,
                       credential=credential)  # fmt: skip
    lifecycle.install_signal_handlers(ctx)
    try:
        code = lifecycle.run(ctx)
    finally:
        server.close()
        _cleanup(ctx)
    log.info("pilot exits with %d (peak RSS %d kB)", code, probes.peak_rss_kb())
    return code


def _credential(cfg: config.PilotConfig) -> credentials.Credential | None:
    """The proxy as the pilot will use it (see pilot.credentials); None when it cannot be read."""
    removed = credentials.scrub_environ()  # nothing the pilot starts inherits a credential variable
    try:
        credential = credentials.load(cfg.proxy, conceal=cfg.conceal_proxy, remove=cfg.remove_proxy)
    except PilotFailure as exc:
        print(f"pilot: cannot run for queue {cfg.queue}: {exc}", file=sys.stderr, flush=True)
        return None
    if credential.concealed:
        log.info(
            "proxy held in memory, pilot non-dumpable; removed from the environment: %s", removed or "nothing"
        )
        if os.getuid() != 0 and credentials.code_is_writable():  # root: a switched payload cannot write it
            log.warning("the pilot's code is writable by its own user: a payload running as this user could "
                        "alter the next job wrapper; install the pilot read-only or use identity switching")  # fmt: skip
        # (the file's path is not logged: the payload can read this log)
        if not cfg.remove_proxy and os.getuid() != 0:
            log.warning("the proxy file (--proxy/X509_USER_PROXY) stays readable by uid %d processes, the "
                        "payload among them, which may find its path in the environment or command line of "
                        "the process that started the pilot; use --remove-proxy with a private copy",
                        os.getuid())  # fmt: skip
    elif cfg.proxy:
        log.warning("proxy not concealed (--no-conceal-proxy or no memfd here): a payload running as the "
                    "pilot's user can read it")  # fmt: skip
    return credential


def _warn_about_queue(cfg: config.PilotConfig, queuedata: dict) -> None:
    """What this pilot will not protect on this queue, said once at start-up."""
    if os.geteuid() == 0 and not cfg.user_map:
        log.warning("the pilot runs as root without --user-map: payloads will run as root%s; give --user-map "
                    "to run each payload as its owner's local account",
                    " (this queue has glexec: its jobs fail with 1391)" if glexec.wanted(queuedata) else "")  # fmt: skip
    _kept, refused = credentials.queue_environ(infosys.environ(queuedata))
    if refused:
        log.warning("queue %s: its environ may not set %s (queuedata is not signed): dropped from every "
                    "payload's environment", cfg.queue, ", ".join(refused))  # fmt: skip


def _logging(home, debug: bool) -> None:
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s")
    os.close(os.open(home / "pilotlog.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600))
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for handler in (logging.FileHandler(home / "pilotlog.txt"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _cleanup(ctx: PilotContext) -> None:
    """Remove the pilot's home unless a job dir in it is kept for recovery (or --no-cleanup)."""
    if not ctx.cfg.cleanup or any(ctx.home.glob(f"{workdir.JOB_DIR_PREFIX}*")):
        return
    workdir.remove(ctx.home)
