"""A private single-node Slurm for the tests and `make run SUBMITTER=slurm`.

up:     start munged, slurmctld and slurmd under --dir (default var/slurm), all private to it: own
        munge key and socket, slurm.conf, state, spool, pid files and logs; daemons bound to
        127.0.0.1 on ports picked free at start (below 32768). Waits until the node is idle and
        prints the `export SLURM_CONF=...` line that points sbatch/squeue/scancel at it
        (`eval "$(python -m scripts.localslurm up)"`). Up again while it runs: reused as it is.
        Finished jobs stay in `squeue --states=all` for 10 minutes (MinJobAge).
down:   cancel the jobs still queued or running, then stop the three daemons by the PIDs in their
        pid files under --dir. Nothing outside --dir is touched.
status: whether each daemon runs, and sinfo's view of the node.

Recipe from reference/feasibility.md §2 (slurm-wlm 22.05 from Debian): proctrack/linuxproc +
task/none (no cgroups to clean up), jobcomp/filetxt (no slurmdbd, so no sacct), loopback only via
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny. Needs root (slurmd starts jobs as their user).
Packages: scripts/system-deps.sh installs slurm-wlm and munge.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "scontrol")
DAEMONS = ("slurmd", "slurmctld", "munged")  # stop order: the node, the controller, then auth
PORT_RANGE = (20000, 32767)  # below the kernel's ephemeral range (32768-60999), so no client port clashes
START_ATTEMPTS = 3  # a port taken between our probe and the daemon's bind: retry with new ports
READY_SECONDS = 30.0
STOP_SECONDS = 15.0
# Finished jobs stay in slurmctld's memory (and so in `squeue --states=all`) for MinJobAge
# seconds. Without slurmdbd there is no sacct: squeue is the only place the factory learns a
# pilot's final state and exit code, so it must stay visible for a few factory cycles (even a
# slow one) — 10 minutes — while a long-running `make run` does not keep every job forever.
MIN_JOB_AGE = 600
UP_STATES = ("idle", "mixed", "allocated")
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes


class LocalSlurmError(RuntimeError):
    pass


def installed() -> bool:
    """The daemons and client commands are on this machine (apt-get install slurm-wlm munge)."""
    return all(_which(p) for p in PROGRAMS)


def _which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")


@dataclasses.dataclass(frozen=True)
class LocalSlurm:
    """A running local Slurm; `with start(base) as slurm:` stops it at the end of the block."""

    base: Path
    cluster: str
    ctld_port: int
    slurmd_port: int
    partition: str

    @property
    def conf(self) -> Path:
        return self.base / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """This process's environment plus SLURM_CONF: what sbatch/squeue/scancel callers need."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def pids(self) -> dict[str, int | None]:
        """The daemons' PIDs from their pid files, None where not running (checked against /proc)."""
        return {name: _own_pid(self.base, name) for name in DAEMONS}

    def stop(self) -> None:
        stop(self.base)

    def __enter__(self) -> LocalSlurm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _paths(base: Path) -> dict[str, Path]:
    return {
        "munged.pid": base / "munge" / "munged.pid",
        "slurmctld.pid": base / "slurmctld.pid",
        "slurmd.pid": base / "slurmd.pid",
        "socket": base / "munge" / "munge.socket",
        "key": base / "munge" / "munge.key",
        "info": base / "localslurm.json",
    }


def _own_pid(base: Path, daemon: str) -> int | None:
    """The PID in daemon's pid file under base if that process is alive AND was started for base
    (its command line names a path under base), so a reused PID is never taken for ours."""
    try:
        pid = int(_paths(base)[f"{daemon}.pid"].read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    if daemon in cmdline and f"{base}/" in cmdline:
        return pid
    return None


def _free_port(taken: set[int]) -> int:
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise LocalSlurmError(f"no free port found in {PORT_RANGE}")


def _slurm_conf(base: Path, cluster: str, ctld_port: int, slurmd_port: int, cpus: int, memory_mb: int,
                partition: str) -> str:  # fmt: skip
    user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""\
# Written by scripts/localslurm.py; regenerated (with new ports) on every start.
ClusterName={cluster}
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
CredType=cred/munge
# our own munged (the socket is read by auth/munge and cred/munge alike)
AuthInfo=socket={_paths(base)["socket"]}
SlurmUser={user}
SlurmdUser={user}
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={base}/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
InactiveLimit=0
# a cancelled pilot gets SIGTERM, then SIGKILL this many seconds later
KillWait=5
MinJobAge={MIN_JOB_AGE}
# the node is what this file says (CPUs, memory), whatever the machine has: never drained for it
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _load_info(base: Path) -> dict:
    try:
        return json.loads(_paths(base)["info"].read_text())
    except (OSError, ValueError):
        return {}


def _instance(base: Path) -> LocalSlurm | None:
    info = _load_info(base)
    if not info:
        return None
    return LocalSlurm(base, info["cluster"], info["ctld_port"], info["slurmd_port"], info["partition"])


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def _node_state(slurm: LocalSlurm) -> str:
    try:
        proc = _run([_which("sinfo") or "sinfo", "-h", "-N", "-o", "%T"], env=slurm.env, timeout=10)
    except subprocess.TimeoutExpired:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _reachable(base: Path) -> None:
    """munged wants every directory above its socket searchable by all (clients must reach it)."""
    base.chmod(base.stat().st_mode | 0o111)
    for parent in base.parents:
        if not parent.stat().st_mode & 0o001:
            raise LocalSlurmError(f"{parent} is not searchable by all users (chmod o+x), which munged "
                                  f"requires above its socket {_paths(base)['socket']}")  # fmt: skip


def _start_munged(base: Path) -> None:
    p = _paths(base)
    p["key"].parent.mkdir(mode=0o755, exist_ok=True)
    if not p["key"].exists():  # a key of our own: nothing shared with the machine's munged
        fd = os.open(p["key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(1024))
    p["socket"].unlink(missing_ok=True)
    # munged runs fine as root here; it daemonizes once its socket is ready
    proc = _run([_which("munged") or "munged", f"--socket={p['socket']}", f"--key-file={p['key']}",
                 f"--pid-file={p['munged.pid']}", f"--log-file={base / 'munge' / 'munged.log'}",
                 f"--seed-file={base / 'munge' / 'munged.seed'}", "--num-threads=2"])  # fmt: skip
    if proc.returncode != 0:
        log = _tail(base / "munge" / "munged.log")
        raise LocalSlurmError(f"munged did not start: {proc.stderr.strip()}\n{log}")
    _wait_for(lambda: _own_pid(base, "munged") is not None and p["socket"].exists(), 10, "munged socket",
              base / "munge" / "munged.log")  # fmt: skip


def _wait_for(ready, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise LocalSlurmError(f"{what} not ready after {seconds:.0f} s; {log}:\n{_tail(log)}")


def _start_slurm(slurm: LocalSlurm, fresh: bool) -> bool:
    """Start slurmctld and slurmd; True when the node is up (idle), False when a daemon died (a port
    clash: the caller retries with new ports); raises when they run but the node never comes up."""
    base = slurm.base
    ctld = [_which("slurmctld") or "slurmctld", "-f", str(slurm.conf)] + (["-c"] if fresh else [])
    for argv in (ctld, [_which("slurmd") or "slurmd", "-f", str(slurm.conf), "-N", "localhost"]):
        proc = _run(argv)
        if proc.returncode != 0:
            name = Path(argv[0]).name
            log = _tail(base / f"{name}.log")
            raise LocalSlurmError(f"{name} did not start: {proc.stderr.strip()}\n{log}")
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if _own_pid(base, "slurmctld") is None or _own_pid(base, "slurmd") is None:
            time.sleep(0.5)  # pid files are written just after the fork
            if _own_pid(base, "slurmctld") is None or _own_pid(base, "slurmd") is None:
                return False
        if _node_state(slurm) in UP_STATES:  # idle; mixed/allocated when recovered state has jobs
            return True
    raise LocalSlurmError(f"node not idle after {READY_SECONDS:.0f} s (sinfo says {_node_state(slurm)!r}); "
                          f"{base}/slurmctld.log:\n{_tail(base / 'slurmctld.log')}\n"
                          f"{base}/slurmd.log:\n{_tail(base / 'slurmd.log')}")  # fmt: skip


def start(base: Path, *, cpus: int | None = None, memory_mb: int = 8000,
          partition: str = "debug") -> LocalSlurm:  # fmt: skip
    """Start (or reuse, when it already runs under base) the private Slurm; returns when idle.

    memory_mb is the node's RealMemory: the largest --mem a job may ask (CR_Core: memory is not
    consumed, so jobs asking for it still run side by side). cpus defaults to the machine's."""
    if not installed():
        missing = [p for p in PROGRAMS if not _which(p)]
        raise LocalSlurmError(f"Slurm is not installed (missing {', '.join(missing)}); "
                              "install it with: apt-get install -y --no-install-recommends slurm-wlm munge "
                              "(or bash scripts/system-deps.sh as root)")  # fmt: skip
    base = Path(base).resolve()
    if len(str(_paths(base)["socket"])) > SOCKET_PATH_MAX:
        raise LocalSlurmError(f"{base} is too long a path for munged's socket; use a shorter directory")
    running = {name: pid for name, pid in LocalSlurm(base, "", 0, 0, partition).pids().items() if pid}
    if running:
        existing = _instance(base)
        if len(running) == len(DAEMONS) and existing and _node_state(existing) in UP_STATES:
            return existing  # already up: reuse
        raise LocalSlurmError(f"a local Slurm under {base} is partly running ({running}); "
                              f"stop it first: python -m scripts.localslurm down --dir {base}")  # fmt: skip
    base.mkdir(parents=True, exist_ok=True)
    _reachable(base)
    for sub in ("state", "spool"):
        (base / sub).mkdir(exist_ok=True)
    # the cluster name is kept per base: slurmctld refuses state saved under another name
    cluster = _load_info(base).get("cluster") or f"local{secrets.token_hex(4)}"
    fresh = not any((base / "state").iterdir())
    try:
        _start_munged(base)
        for _attempt in range(START_ATTEMPTS):
            ctld_port = _free_port(set())
            slurm = LocalSlurm(base, cluster, ctld_port, _free_port({ctld_port}), partition)
            slurm.conf.write_text(_slurm_conf(base, cluster, slurm.ctld_port, slurm.slurmd_port,
                                              cpus or os.cpu_count() or 1, memory_mb, partition))  # fmt: skip
            _paths(base)["info"].write_text(json.dumps(
                {"cluster": cluster, "ctld_port": slurm.ctld_port, "slurmd_port": slurm.slurmd_port,
                 "partition": partition}))  # fmt: skip
            if _start_slurm(slurm, fresh):
                return slurm
            _kill_daemons(base, ("slurmd", "slurmctld"))
        raise LocalSlurmError(f"slurmctld/slurmd kept dying ({START_ATTEMPTS} tries with new ports); "
                              f"{base}/slurmctld.log:\n{_tail(base / 'slurmctld.log')}")  # fmt: skip
    except BaseException:
        _kill_daemons(base, DAEMONS)
        raise


def _cancel_jobs(slurm: LocalSlurm) -> None:
    """Cancel what is queued or running and wait (bounded) until no job is left on the node:
    job processes live under slurmstepd, which is no daemon of ours to kill by pid file."""
    active = "--states=PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING"
    squeue = [_which("squeue") or "squeue", "-h", "-o", "%i", active]
    try:
        ids = _run(squeue, env=slurm.env, timeout=10).stdout.split()
        if not ids:
            return
        _run([_which("scancel") or "scancel", *ids], env=slurm.env, timeout=10)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and _run(squeue, env=slurm.env, timeout=10).stdout.split():
            time.sleep(0.3)
    except subprocess.TimeoutExpired:
        pass


def _kill_daemons(base: Path, names: tuple[str, ...]) -> list[str]:
    stopped = []
    for name in names:
        pid = _own_pid(base, name)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and _own_pid(base, name) == pid:
            time.sleep(0.1)
        if _own_pid(base, name) == pid:
            os.kill(pid, signal.SIGKILL)
        stopped.append(f"{name} (pid {pid})")
    return stopped


def _steps_left(base: Path) -> bool:
    """Whether a job step still has a slurmstepd: its socket <node>_<job>.<step> in the spool."""
    spool = base / "spool"
    return spool.is_dir() and any(p.is_socket() for p in spool.glob("localhost_*"))


def _revive(slurm: LocalSlurm) -> None:
    """Restart the daemons that died (same slurm.conf, ports and state) so that Slurm itself can end
    the jobs still running: a new slurmd takes their slurmstepd back. Best effort, bounded."""
    base = slurm.base
    try:
        if _own_pid(base, "munged") is None:
            _start_munged(base)
        for name, argv in (("slurmctld", ["-f", str(slurm.conf)]),
                           ("slurmd", ["-f", str(slurm.conf), "-N", "localhost"])):  # fmt: skip
            if _own_pid(base, name) is None:
                _run([_which(name) or name, *argv])
        _wait_for(lambda: _node_state(slurm) in UP_STATES, 15, "the revived node", base / "slurmd.log")
    except (LocalSlurmError, subprocess.TimeoutExpired) as exc:
        print(f"localslurm: could not revive {base} to end its jobs: {exc}", file=sys.stderr)


def stop(base: Path) -> list[str]:
    """Cancel the remaining jobs and stop the daemons started for base; returns what was stopped."""
    base = Path(base).resolve()
    slurm = _instance(base)
    if slurm and _steps_left(base) and None in slurm.pids().values():
        _revive(slurm)  # a daemon died while jobs ran: without it their processes would stay behind
    if slurm and _own_pid(base, "slurmctld") and _own_pid(base, "slurmd"):
        _cancel_jobs(slurm)
    return _kill_daemons(base, DAEMONS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.localslurm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=ROOT / "var" / "slurm",
                        help="where everything of this Slurm lives (default: var/slurm)")  # fmt: skip
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the node (default: the machine's)")
    parser.add_argument("--memory", type=int, default=8000, help="node memory, MB: the largest --mem (8000)")
    parser.add_argument("--partition", default="debug", help="the one partition's name (debug)")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            t0 = time.monotonic()
            slurm = start(args.dir, cpus=args.cpus, memory_mb=args.memory, partition=args.partition)
            print(f"# local Slurm {slurm.cluster} up in {time.monotonic() - t0:.1f} s: partition "
                  f"{slurm.partition}, slurmctld 127.0.0.1:{slurm.ctld_port}, slurmd 127.0.0.1:{slurm.slurmd_port}",
                  file=sys.stderr)  # fmt: skip
            print(f"export SLURM_CONF={slurm.conf}")
        elif args.action == "down":
            for what in stop(args.dir) or ["nothing was running"]:
                print(f"stopped {what}" if "pid" in what else what)
        else:
            return _status(args.dir.resolve())
    except LocalSlurmError as exc:
        print(f"localslurm: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(base: Path) -> int:
    slurm = _instance(base)
    if slurm is None:
        print(f"no local Slurm under {base}")
        return 1
    pids = slurm.pids()
    for name, pid in pids.items():
        print(f"{name:10} {'pid ' + str(pid) if pid else 'not running'}")
    if all(pids.values()):
        print(f"node       {_node_state(slurm) or 'no answer'} (cluster {slurm.cluster}, "
              f"ports {slurm.ctld_port}/{slurm.slurmd_port})")  # fmt: skip
        print(f"export SLURM_CONF={slurm.conf}")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
