"""The local grid on one machine: `make run` (up + demo) and `make stop` (down).

up:   private PostgreSQL under var/pg (127.0.0.1:$PANDA_PG_PORT, default 16432), PKI in var/pki,
      migrations, schedconfig sync, the server (gunicorn https :25443 and http :25080), the
      data-service daemons (setupper, activator, adder, finisher, waker), the watcher, the
      sitedata daemon and the local DDM's transfer agent in the background; PIDs in var/run,
      logs in var/log.
      and AutoPilot, the pilot factory, with the `local` submitter (pilots are processes here), or
      with `slurm` (PANDA_AUTOPILOT_SUBMITTER=slurm, `make run SUBMITTER=slurm`: a private
      single-node Slurm in var/slurm is started first).
demo: the data-driven flow (scripts/demo.py): production jobs brokered over CLOUDA's T2s,
      inputs moved T1 → T2, outputs aggregated at the T1, an analysis job where its data is;
      the factory sends the pilots that run them.
down: stops every process listed in var/run (by PID, process group) and the PostgreSQL.
status: what is running.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
RUN, LOG = VAR / "run", VAR / "log"
PG_PORT = int(os.environ.get("PANDA_PG_PORT", "16432"))
DB_URL = os.environ.get("PANDA_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:{PG_PORT}/panda")
SERVICES = {  # name → argv; gunicorn listeners pick their port with PANDA_LISTEN
    "server-https": ["gunicorn", "-c", "panda_server/gunicorn_conf.py", "panda_server.wsgi:application"],
    "server-http": ["gunicorn", "-c", "panda_server/gunicorn_conf.py", "panda_server.wsgi:application"],
    "setupper": ["panda-daemon", "setupper"],
    "activator": ["panda-daemon", "activator"],
    "adder": ["panda-daemon", "adder"],
    "finisher": ["panda-daemon", "finisher"],
    "waker": ["panda-daemon", "waker"],
    "watcher": ["panda-daemon", "watcher"],
    "sitedata": ["panda-daemon", "sitedata"],
    "ddm": ["panda-daemon", "ddm"],  # the local DDM's transfer agent (docs/ddm.md)
    "autopilot": ["panda-autopilot"],  # the pilot factory (docs/autopilot.md); pilots' logs on :25881
}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("PANDA_DATABASE_URL", DB_URL)
    e.setdefault("PANDA_PKI_DIR", str(VAR / "pki"))
    # trust Bearer tokens of the local issuer (tokens.LOCAL_ISSUER, `panda-ca token`); panda-ca init makes its key
    issuer_pub = Path(e["PANDA_PKI_DIR"]) / "token-issuer-pub.pem"
    e.setdefault("PANDA_TOKEN_ISSUERS", f"https://localhost/pandawms-token-issuer={issuer_pub}")
    e.setdefault("PANDA_TOKEN_ISSUER_VOS", "https://localhost/pandawms-token-issuer=atlas")
    e.setdefault("PANDA_SERVER_NAME", "localhost")
    # the factory: a 10 s cycle (classic 120 s) for the demo's pace; pilots work under var/pilots;
    # `make run SUBMITTER=slurm` sets PANDA_AUTOPILOT_SUBMITTER and up() starts a local Slurm
    e.setdefault("PANDA_AUTOPILOT_INTERVAL", "10")
    e.setdefault("PANDA_AUTOPILOT_PILOT_WORKDIR", str(VAR / "pilots"))
    if e.get("PANDA_AUTOPILOT_SUBMITTER") == "slurm" or (VAR / "slurm" / "slurm.conf").exists():
        e.setdefault("SLURM_CONF", str(VAR / "slurm" / "slurm.conf"))
    e["PATH"] = f"{Path(sys.executable).parent}:{e.get('PATH', '')}"
    return e


def step(text: str, argv: list[str]) -> None:
    print(f"==> {text}", flush=True)
    proc = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{proc.stdout}{proc.stderr}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_service(name: str) -> None:
    pidfile = RUN / f"{name}.pid"
    if pidfile.exists() and alive(int(pidfile.read_text())):
        print(f"    {name} already running (pid {pidfile.read_text().strip()})")
        return
    extra = {"PANDA_LISTEN": name.split("-")[1]} if name.startswith("server-") else {}
    bin_dir = Path(sys.executable).parent
    argv = [str(bin_dir / SERVICES[name][0]), *SERVICES[name][1:]]
    with open(LOG / f"{name}.log", "ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env={**env(), **extra}, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    pidfile.write_text(str(proc.pid))
    print(f"    {name} started (pid {proc.pid}, log var/log/{name}.log)")


def wait_alive(url: str, seconds: float = 60) -> None:
    import requests

    s = requests.Session()
    s.trust_env = False
    s.verify, s.cert = str(VAR / "pki" / "ca"), str(VAR / "pki" / "user.proxy")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if s.get(f"{url}/server/panda/isAlive", timeout=3).text == "alive=yes":
                return
        except requests.RequestException:
            time.sleep(0.3)
    sys.exit(f"server at {url} did not come up; see var/log/")


def up() -> None:
    for d in (RUN, LOG):
        d.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    step(f"PostgreSQL on 127.0.0.1:{PG_PORT} (var/pg)", [py, "-m", "panda_server.cli", "pg", "start", "--dir",
                                                       str(VAR / "pg"), "--port", str(PG_PORT)])  # fmt: skip
    step("PKI in var/pki (CA, host, user and pilot proxies)", [py, "-m", "panda_server.ca", "init", "--dir",
                                                               str(VAR / "pki")])  # fmt: skip
    step("migrations", [py, "-m", "panda_server.cli", "db", "upgrade"])
    step("schedconfig sync", [py, "-m", "schedconfig.cli", "sync"])
    if env().get("PANDA_AUTOPILOT_SUBMITTER") == "slurm":  # pilots mostly wait on I/O: 6 slots on any machine
        step("a private single-node Slurm in var/slurm (the factory's batch system)",
             [py, "-m", "scripts.localslurm", "up", "--dir", str(VAR / "slurm"), "--cpus", "6"])  # fmt: skip
    print("==> services", flush=True)
    for name in SERVICES:
        start_service(name)
    wait_alive("https://localhost:25443")
    wait_alive("http://localhost:25080")


def down() -> None:
    if (RUN / "autopilot.pid").exists():  # the factory's pilots live in their own sessions
        subprocess.run([str(Path(sys.executable).parent / "panda-autopilot"), "cancel", "--all"], cwd=ROOT,
                       env=env(), timeout=120)  # fmt: skip
    for pidfile in sorted(RUN.glob("*.pid")) if RUN.exists() else []:
        pid = int(pidfile.read_text())
        if alive(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):  # up to 20 s for a graceful exit
                if not alive(pid):
                    break
                time.sleep(0.2)
            else:
                os.killpg(pid, signal.SIGKILL)
            print(f"stopped {pidfile.stem} (pid {pid})")
        pidfile.unlink()
    if (VAR / "slurm" / "slurm.conf").exists():
        from scripts import localslurm

        for what in localslurm.stop(VAR / "slurm"):
            print(f"stopped Slurm's {what}")
    from panda_server.db import localpg

    if (VAR / "pg" / "data" / "postmaster.pid").exists():
        localpg.stop(VAR / "pg")
        print("stopped PostgreSQL")


def status() -> int:
    running = 0
    for pidfile in sorted(RUN.glob("*.pid")) if RUN.exists() else []:
        pid = int(pidfile.read_text())
        state = "running" if alive(pid) else "dead"
        running += state == "running"
        print(f"{pidfile.stem:14} pid {pid:7} {state}")
    pg = (VAR / "pg" / "data" / "postmaster.pid").exists()
    print(f"{'postgresql':14} {'running' if pg else 'stopped'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["up", "down", "demo", "status"])
    args = parser.parse_args(argv)
    if args.action == "up":
        up()
    elif args.action == "down":
        down()
    elif args.action == "demo":
        from scripts import demo

        return demo.main(env())
    else:
        return status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
