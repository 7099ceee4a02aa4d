"""pilot.wrapper.payload: run, watch, kill, and interpret a real payload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot.errors import PilotFailure
from pilot.util import processes
from pilot.wrapper.payload import PayloadResult, PayloadSample, interpret, read_tail, run_payload

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C"}
FAST = {"poll": 0.1, "grace": 0.5}


class Seen:
    """Every payload process the monitor saw (pid → start time), to prove none is left afterwards."""

    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.samples: list[PayloadSample] = []

    def __call__(self, sample: PayloadSample) -> None:
        self.samples.append(sample)
        for pid in sample.pids:
            info = processes.proc_info(pid)
            if info is not None:
                self.ids[pid] = info.start

    def alive(self) -> list[int]:
        return sorted(processes.still_running(self.ids))


@pytest.fixture
def run(tmp_path):
    """run_payload in tmp_path with fast polling; kills by pid whatever a failing test left behind."""
    seen: list[Seen] = []

    def _run(command: str, **kw):
        s = Seen()
        seen.append(s)
        user_monitor = kw.pop("monitor", None)

        def monitor(sample):
            s(sample)
            return user_monitor(sample) if user_monitor else None

        kw = {**FAST, **kw}
        result = run_payload(
            command,
            cwd=tmp_path,
            env=kw.pop("env", ENV),
            stdout_path=tmp_path / "payload.stdout",
            stderr_path=tmp_path / "payload.stderr",
            monitor=monitor,
            **kw,
        )
        return result, s

    yield _run
    for s in seen:
        for pid, start in processes.still_running(s.ids).items():
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"payload process {pid} (start {start}) was left running")


def test_success_writes_stdout_stderr_in_cwd(run, tmp_path):
    pids = []
    result, _ = run("echo out; echo err >&2; pwd", on_start=pids.append)
    assert (result.exit_code, result.signal, result.killed) == (0, None, None)
    assert (tmp_path / "payload.stdout").read_text() == f"out\n{tmp_path}\n"
    assert (tmp_path / "payload.stderr").read_text() == "err\n"
    assert len(pids) == 1 and pids[0] > 1
    assert result.wall_seconds >= 0 and result.max_rss_kb > 0
    assert interpret(result, read_tail(tmp_path / "payload.stderr")) == (0, 0, "")


def test_exit_code_and_stderr_diag(run, tmp_path):
    result, _ = run("echo first >&2; echo 'the real reason' >&2; exit 3")
    assert (result.exit_code, result.signal) == (3, None)
    tail = read_tail(tmp_path / "payload.stderr")
    assert interpret(result, tail) == (1305, 3, "payload exited with code 3: the real reason")


def test_env_is_exactly_what_is_passed(run, tmp_path, monkeypatch):
    monkeypatch.setenv("PILOT_TEST_SENTINEL", "must-not-leak")
    result, _ = run("env", env={**ENV, "PANDAID": "42"})
    assert result.exit_code == 0
    env = dict(line.split("=", 1) for line in (tmp_path / "payload.stdout").read_text().splitlines())
    assert env["PANDAID"] == "42" and env["PATH"] == ENV["PATH"]
    assert "PILOT_TEST_SENTINEL" not in env and "HOME" not in env
    assert set(env) - set(ENV) - {"PANDAID"} <= {"PWD", "SHLVL", "_"}  # what bash adds itself


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGSEGV, 1203), (signal.SIGTERM, 1201), (signal.SIGUSR1, 1207), (signal.SIGKILL, 1200)],
)
def test_death_by_signal(run, sig, code):
    result, _ = run(f"ulimit -c 0; kill -{sig.name[3:]} $$")
    assert (result.exit_code, result.signal, result.killed) == (None, sig, None)
    assert interpret(result, "")[:2] == (code, 128 + sig)


def test_walltime_kills_the_whole_tree(run):
    t0 = time.monotonic()
    result, seen = run("setsid sleep 300 & trap '' TERM; sleep 300; true", walltime=0.5)
    assert result.killed == (1213, "payload exceeded the wall-time limit of 0.5 s")
    assert len(seen.ids) >= 3 and seen.alive() == []
    assert time.monotonic() - t0 < 20
    assert interpret(result, "")[0] == 1213


def test_should_kill_wins_within_poll_and_grace(run):
    t0 = time.monotonic()

    def should_kill():
        return (1144, "killed by the server (tobekilled)") if time.monotonic() - t0 > 0.3 else None

    result, seen = run("sleep 300", should_kill=should_kill)
    elapsed = time.monotonic() - t0
    assert result.killed == (1144, "killed by the server (tobekilled)")
    assert result.signal == signal.SIGTERM and seen.alive() == []
    assert elapsed < 0.3 + FAST["poll"] + FAST["grace"] + 10  # generous: shared machine
    assert interpret(result, "") == (1144, 143, "killed by the server (tobekilled)")


def test_monitor_verdict_kills(run):
    def monitor(sample: PayloadSample):
        assert sample.pid == sample.pgid and sample.pid in sample.pids
        return (1235, f"rss {sample.rss_kb} kB too high") if sample.rss_kb > 0 else None

    result, seen = run("sleep 300 & sleep 300", monitor=monitor)
    assert result.killed is not None and result.killed[0] == 1235
    assert seen.alive() == []
    assert result.max_rss_kb > 0


def test_leftovers_are_killed_after_the_main_process_exits(run):
    result, seen = run("setsid sleep 300 & sleep 300 & sleep 0.5; exit 0")
    assert result.exit_code == 0 and result.killed is None
    assert len(result.leftovers) == 2  # the group member and the setsid orphan seen while running
    assert seen.alive() == [] and not processes.still_running(
        {p: s for p, s in seen.ids.items() if p in result.leftovers}
    )


def test_background_job_in_the_group_is_killed_even_unseen(run):
    result, seen = run("sleep 300 & exit 0", poll=5)  # ends before the first sample
    assert result.exit_code == 0 and len(result.leftovers) == 1
    assert processes.proc_info(result.leftovers[0]) is None or not processes.still_running(
        {result.leftovers[0]: processes.proc_info(result.leftovers[0]).start}
    )


def test_cpu_time_is_counted(run):
    result, _ = run("i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done")
    assert result.exit_code == 0 and result.cpu_seconds > 0


def test_exception_in_a_callback_still_kills_the_payload(run):
    def monitor(sample):
        raise RuntimeError("monitor bug")

    with pytest.raises(RuntimeError, match="monitor bug"):
        run("sleep 300 & sleep 300", monitor=monitor)
    # the fixture's teardown fails the test if any process seen is still running


SUBREAPER = """
import json, os, sys
from pathlib import Path
from pilot.util import processes
from pilot.wrapper.payload import run_payload
d = Path(sys.argv[1])
subreaper = processes.become_subreaper()  # as the job wrapper does first thing
r = run_payload(sys.argv[2], cwd=d, env={"PATH": "/usr/bin:/bin"}, stdout_path=d / "o", stderr_path=d / "e",
                poll=0.5, grace=0.5, adopt_orphans=processes.is_subreaper())
children = [i.pid for i in map(processes.proc_info, (int(n) for n in os.listdir("/proc") if n.isdigit()))
            if i is not None and i.ppid == os.getpid()]
print(json.dumps({"subreaper": subreaper, "exit": r.exit_code, "leftovers": r.leftovers, "children": children}))
"""


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


def test_a_double_forked_orphan_in_a_new_session_does_not_outlive_the_payload(tmp_path):
    """The payload daemonizes a sleep (subshell + setsid) and exits before the first sample: nothing
    ever sees the sleep in the payload's tree or group; as a child subreaper the wrapper still has it."""
    sleep = ["sleep", f"300.{os.getpid()}{time.monotonic_ns() % 100000}"]  # this test's own, by its argv
    code = f"(setsid {' '.join(sleep)} > /dev/null 2>&1 &); exit 0"
    try:
        r = subprocess.run([sys.executable, "-c", SUBREAPER, str(tmp_path), code], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})  # fmt: skip
        left = _processes_with_argv(sleep)
    finally:
        for pid in _processes_with_argv(sleep):  # only if the wrapper failed to: by this test's argv
            os.kill(pid, signal.SIGKILL)
    out = json.loads(r.stdout or "{}") or pytest.fail(r.stderr)
    assert out["subreaper"] is True and out["exit"] == 0
    assert left == [], "the orphan was killed with the payload"
    assert len(out["leftovers"]) == 1 and out["children"] == [], "and reaped: no zombie is left"


def test_unstartable_payload_is_a_pilot_failure(tmp_path):
    with pytest.raises(PilotFailure) as err:
        run_payload(
            "true",
            cwd=tmp_path / "missing",
            env=ENV,
            stdout_path=tmp_path / "o",
            stderr_path=tmp_path / "e",
        )
    assert err.value.code == 1310


def _result(exit_code=None, sig=None, killed=None) -> PayloadResult:
    return PayloadResult(exit_code, sig, 1.0, 0.5, 1000, killed)


@pytest.mark.parametrize(
    ("result", "tail", "expected"),
    [
        (_result(0), "warning\n", (0, 0, "")),
        (_result(1), "", (1305, 1, "payload exited with code 1")),
        (
            _result(2),
            "a\nERROR: input missing\n\n",
            (1305, 2, "payload exited with code 2: ERROR: input missing"),
        ),
        (_result(139), "", (1305, 139, "payload exited with code 139")),
        (_result(sig=signal.SIGTERM), "", (1201, 143, "payload killed by SIGTERM (15)")),
        (_result(sig=signal.SIGQUIT), "", (1202, 131, "payload killed by SIGQUIT (3)")),
        (_result(sig=signal.SIGSEGV), "oops\n", (1203, 139, "payload killed by SIGSEGV (11): oops")),
        (_result(sig=signal.SIGXCPU), "", (1204, 152, "payload killed by SIGXCPU (24)")),
        (_result(sig=signal.SIGBUS), "", (1206, 135, "payload killed by SIGBUS (7)")),
        (_result(sig=signal.SIGUSR1), "", (1207, 138, "payload killed by SIGUSR1 (10)")),
        (_result(sig=signal.SIGINT), "", (1208, 130, "payload killed by SIGINT (2)")),
        (_result(sig=signal.SIGKILL), "", (1200, 137, "payload killed by SIGKILL (9)")),
        (_result(sig=signal.SIGHUP), "", (1200, 129, "payload killed by SIGHUP (1)")),
        (_result(sig=15, killed=(1150, "looping")), "x", (1150, 143, "looping")),
        (_result(0, killed=(1213, "wall")), "", (1213, 0, "wall")),
        (_result(), "", (1220, 0, "the payload's exit status could not be collected")),
    ],
)
def test_interpret_table(result, tail, expected):
    assert interpret(result, tail) == expected


def test_read_tail(tmp_path: Path):
    p = tmp_path / "big"
    p.write_bytes(b"x" * 10000 + b"\nlast line\n")
    assert read_tail(p, 20).endswith("last line\n") and len(read_tail(p, 20)) == 20
    assert read_tail(tmp_path / "missing") == ""
