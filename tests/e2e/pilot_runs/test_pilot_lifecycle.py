"""Our pilot against the real server: no job, a job that finishes, a failing payload, the
transformation fetched from the server's /cache/, a kill through killJobs, a looping job.

The queue CLOUDA_T1 has a directory storage element (<storage_root>/CLOUDA_T1_DATADISK) and
the `mv` copy tool; each pilot runs as a subprocess (`python -m pilot`) with the pilot proxy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tarfile
import time
import zlib
from pathlib import Path

from pilot.infosys import rucio_path
from tests.support import pilots

QUEUE, DDM = "CLOUDA_T1", "CLOUDA_T1_DATADISK"


def se_file(live, scope: str, lfn: str) -> Path:
    return live.storage_root / DDM / rucio_path(scope, lfn)


def adler(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def test_no_job_exits_promptly_with_a_clear_message(live, pilot_dir):
    t0 = time.monotonic()
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "-v", "2")
    assert proc.returncode == 82, proc.stderr
    assert "no job for queue CLOUDA_T1" in proc.stdout
    assert proc.stderr.count("no job for CLOUDA_T1") == 2  # two getJob requests, as asked
    assert time.monotonic() - t0 < 60
    assert not list(pilot_dir.glob("PanDA_Pilot_*")), "the pilot leaves no home behind"


def test_job_with_output_finishes_with_files_on_the_se(live, engine, pilot_dir):
    out = f"out.{os.urandom(4).hex()}.dat"
    job = pilots.shell_job(QUEUE, f'echo "payload $PANDAID" > {out}; echo done', outputs=[out])
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(
        rf"PandaID={pid} finished pilotErrorCode=0 transExitCode=0 stagein=\S+ payload=", proc.stdout
    )
    row = pilots.job_row(engine, pid)
    assert row["jobStatus"] == "holding" and row["pilotErrorCode"] == 0
    for state in ("starting", "running"):  # acknowledged by the server, even for a payload this short
        assert f"PandaID={pid} sent {state}, server command NULL" in proc.stderr
    pilots.run_adder(engine)
    assert pilots.job_row(engine, pid)["jobStatus"] == "finished"
    files = pilots.file_rows(engine, pid)
    for f in files.values():
        path = se_file(live, "test", f["lfn"])
        assert f["fsize"] == path.stat().st_size and f["checksum"] == f"ad:{adler(path)}"
        assert f["status"] == "ready"
    assert se_file(live, "test", out).read_text() == f"payload {pid}\n"
    log_lfn = next(lfn for lfn, f in files.items() if f["type"] == "log")
    with tarfile.open(se_file(live, "test", log_lfn)) as tar:
        names = tar.getnames()
    assert f"tarball_PandaJob_{pid}_{QUEUE}/payload.stdout" in names
    assert not any(n.endswith(("KILL_REQUEST", "LOCKFILE")) for n in names)
    assert not list(pilot_dir.glob("PanDA_Pilot_*")), "job dir and pilot home are cleaned up"


def test_failing_payload_reports_its_exit_code(live, engine, pilot_dir):
    job = pilots.shell_job(QUEUE, "echo something broke >&2; exit 3")
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    assert proc.returncode == 1
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["pilotErrorCode"], str(row["transExitCode"])) == ("holding", 1305, "3")
    assert "exited with code 3" in row["pilotErrorDiag"] and "something broke" in row["pilotErrorDiag"]
    pilots.run_adder(engine)
    assert pilots.job_row(engine, pid)["jobStatus"] == "failed"
    log_row = next(f for f in pilots.file_rows(engine, pid).values() if f["type"] == "log")
    assert log_row["status"] == "ready", "the log of a failed job is still stored"


def test_transformation_downloaded_from_server_cache(live, engine, pilot_dir):
    cache = live.storage_root.parent / "cache" / "trf"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "hello.sh").write_text('#!/bin/bash\necho "trf says $1" > hello.out\n')
    job = pilots.shell_job(QUEUE, "unused", outputs=["hello.out"])
    job.transformation, job.jobParameters = f"{live.https_url}/cache/trf/hello.sh", "world"
    job.Files[0].lfn = f"hello.{os.urandom(4).hex()}.out"
    job.jobParameters = "world"
    (cache / "hello.sh").write_text(f'#!/bin/bash\necho "trf says $1" > {job.Files[0].lfn}\n')
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert se_file(live, "test", job.Files[0].lfn).read_text() == "trf says world\n"
    assert pilots.job_row(engine, pid)["pilotErrorCode"] == 0


def test_transformation_outside_allowed_bases_is_refused(live, engine, pilot_dir):
    job = pilots.shell_job(QUEUE, "unused")
    job.transformation = "https://elsewhere.example/trf/evil.sh"
    pid = pilots.insert_activated(engine, job)
    pilots.run_pilot(live, QUEUE, pilot_dir)
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1149 and "allowed base" in row["pilotErrorDiag"]


def test_kill_through_the_server_reaches_the_payload(live, engine, pilot_dir, workdir):
    pidfile = pilot_dir / "payload.pid"
    job = pilots.shell_job(QUEUE, f"echo $$ > {pidfile}; sleep 300")
    pid = pilots.insert_activated(engine, job)
    proc = pilots.start_pilot(
        live, QUEUE, pilot_dir, "--heartbeat", "2", "--kill-grace", "2", log=pilot_dir / "out.log"
    )
    try:
        payload_pid = int(
            pilots.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "payload start")
        )
        user = live.session(live.pki.user_proxy)
        t_kill = time.monotonic()
        r = user.post(f"{live.https_url}/server/panda/killJobs", data={"ids": json.dumps([pid])}, timeout=30)
        assert r.json() == [True]
        proc.wait(timeout=90)
        elapsed = time.monotonic() - t_kill
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not Path(f"/proc/{payload_pid}").exists(), "the payload process is gone"
    pilots.run_adder(engine)
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("failed", 1144)
    assert "killed by panda server" in row["pilotErrorDiag"]
    log_row = next(f for f in pilots.file_rows(engine, pid).values() if f["type"] == "log")
    assert log_row["status"] == "ready", "the killed job's log is stored"
    assert se_file(live, "test", log_row["lfn"]).stat().st_size == log_row["fsize"]
    assert elapsed < 60, "the kill arrives with the next heartbeat (2 s), not after the payload ends"


def test_silent_payload_is_killed_as_looping(live, engine, pilot_dir):
    job = pilots.shell_job(QUEUE, "echo start; sleep 300")
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--looping-limit", "3", "--check-interval", "1",
                            "--kill-grace", "2", timeout=120)  # fmt: skip
    assert proc.returncode == 1
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1150, row["pilotErrorDiag"]
    assert "no file" in row["pilotErrorDiag"].lower() or "looping" in row["pilotErrorDiag"].lower()


def test_payload_over_its_memory_limit_is_killed(live, engine, pilot_dir):
    script = 'python3 -c "import time; x = bytearray(300 * 2**20); x[::4096] = b\\"1\\" * len(x[::4096]); time.sleep(60)"'
    job = pilots.shell_job(QUEUE, script, minRamCount=100)
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--kill-grace", "2", timeout=120)
    assert proc.returncode == 1
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1235, row["pilotErrorDiag"]  # PAYLOADEXCEEDMAXMEM
    assert "100" in row["pilotErrorDiag"]


def test_payload_over_its_walltime_is_killed(live, engine, pilot_dir):
    job = pilots.shell_job(QUEUE, "echo working; sleep 60", maxWalltime=2)
    pid = pilots.insert_activated(engine, job)
    t0 = time.monotonic()
    pilots.run_pilot(live, QUEUE, pilot_dir, "--kill-grace", "2", timeout=120)
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1213, row["pilotErrorDiag"]  # REACHEDMAXTIME
    assert time.monotonic() - t0 < 45


def test_unreachable_server_gives_a_clear_exit(live, pilot_dir):
    from tests.support.pilots import pilot_argv, pilot_env

    argv = pilot_argv(live, QUEUE, pilot_dir)
    argv[argv.index("--url") + 1] = "https://127.0.0.1:9"  # nothing listens there
    import subprocess

    proc = subprocess.run(argv, env=pilot_env(), cwd=pilot_dir, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 71, proc.stderr[-2000:]  # queuedata could not be had
    assert "cannot run for queue CLOUDA_T1" in proc.stderr and "cannot download" in proc.stderr


def test_offline_queue_is_refused(live, engine, pilot_dir):
    pilots.add_queue(engine, "OFF_T2", status="offline")
    proc = pilots.run_pilot(live, "OFF_T2", pilot_dir)
    assert proc.returncode == 83 and "offline" in proc.stderr


def test_full_local_disk_means_no_job_is_taken(live, engine, pilot_dir):
    pid = pilots.insert_activated(engine, pilots.shell_job(QUEUE, "true"))
    proc = pilots.run_pilot(live, QUEUE, pilot_dir, "--min-free-mb", str(10**12))
    assert proc.returncode == 69, proc.stderr[-2000:]  # no local space, as the real pilot
    assert "not asking for a job" in proc.stderr
    assert pilots.job_row(engine, pid)["jobStatus"] == "activated", "the job stays for another pilot"


def test_job_with_a_path_as_file_name_is_refused_and_reported(live, engine, pilot_dir):
    job = pilots.shell_job(QUEUE, "true", outputs=["../../escape.dat"])
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, QUEUE, pilot_dir)
    assert proc.returncode == 1
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("holding", 1371), row["pilotErrorDiag"]
    assert not (pilot_dir.parent / "escape.dat").exists()


def _processes_with_argv(argv: list[str]) -> list[int]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if fh.read().split(b"\0")[:-1] == [a.encode() for a in argv]:
                    found.append(int(name))
        except OSError:
            continue
    return found


def test_a_payload_that_daemonizes_a_process_leaves_nothing_behind(live, engine, pilot_dir):
    """Double fork + setsid, then exit at once: the job wrapper, a child subreaper, still has the
    daemon as a descendant and kills it with the payload."""
    sleep = ["sleep", f"300.{os.getpid()}{time.monotonic_ns() % 100000}"]  # this test's own, by its argv
    job = pilots.shell_job(QUEUE, f"(setsid {' '.join(sleep)} > /dev/null 2>&1 &); echo daemonized")
    pid = pilots.insert_activated(engine, job)
    try:
        proc = pilots.run_pilot(live, QUEUE, pilot_dir)
        left = _processes_with_argv(sleep)
    finally:
        for p in _processes_with_argv(sleep):  # only if the pilot failed to: by this test's argv
            os.kill(p, signal.SIGKILL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PandaID={pid} finished" in proc.stdout
    assert left == [], "no process of the payload outlives the job"
    assert "the payload left processes" in proc.stderr
