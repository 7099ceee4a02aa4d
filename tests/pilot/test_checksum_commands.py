"""pilot.util.checksum against the real xrdadler32/md5sum, and pilot.util.commands with real processes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest

from pilot.util import commands
from pilot.util.checksum import CHUNK, adler32_file, md5_file, parse_checksum


def live_processes_with(text: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains text."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


# ---------------------------------------------------------------- checksums


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17])
def test_adler32_matches_xrdadler32_and_zlib(tmp_path, size):
    path = tmp_path / "f.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    value = adler32_file(path)
    cli = subprocess.run(["xrdadler32", str(path)], capture_output=True, text=True, timeout=30, check=True)
    assert value == cli.stdout.split()[0]
    assert value == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert len(value) == 8 and value == value.lower()


def test_adler32_is_zero_padded(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert adler32_file(path) == "00000001"


def test_md5_matches_md5sum(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(CHUNK + 5))
    cli = subprocess.run(["md5sum", str(path)], capture_output=True, text=True, timeout=30, check=True)
    assert md5_file(path) == cli.stdout.split()[0] == hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("ad:0a1b2c3d", ("adler32", "0a1b2c3d")),
        ("AD:0A1B2C3D", ("adler32", "0a1b2c3d")),
        ("ad:a1b2c3", ("adler32", "00a1b2c3")),
        ("adler32:0a1b2c3d", ("adler32", "0a1b2c3d")),
        ("md5:" + "ab" * 16, ("md5", "ab" * 16)),
        ("0a1b2c3d", ("adler32", "0a1b2c3d")),
        ("cd" * 16, ("md5", "cd" * 16)),
        ("NULL", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_checksum(text, parsed):
    assert parse_checksum(text) == parsed


@pytest.mark.parametrize("text", ["sha1:abcd", "ad:xyz", "ad:0a1b2c3d4", "md5:abc"])
def test_parse_checksum_rejects_garbage(text):
    with pytest.raises(ValueError):
        parse_checksum(text)


# ---------------------------------------------------------------- commands.run


def test_run_captures_output_and_exit_code(tmp_path):
    result = commands.run(
        ["sh", "-c", 'echo out; echo "err $FOO" >&2; pwd; exit 3'],
        timeout=30,
        env={"PATH": os.environ["PATH"], "FOO": "bar"},
        cwd=tmp_path,
    )
    assert result.returncode == 3 and not result.ok
    assert not result.timed_out and not result.aborted
    assert result.stdout_tail.splitlines() == ["out", str(tmp_path)]
    assert result.stderr_tail.strip() == "err bar"
    assert result.last_error_line() == "err bar"
    assert result.seconds >= 0


def test_run_keeps_only_the_tail():
    result = commands.run(["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; echo END"], timeout=30)
    assert result.ok
    assert len(result.stdout_tail) <= commands.TAIL
    assert result.stdout_tail.endswith("aEND\n")


def test_run_missing_program_gives_127():
    result = commands.run(["/nonexistent/program-xyz"], timeout=10)
    assert result.returncode == 127
    assert "program-xyz" in result.stderr_tail


def test_run_refuses_a_shell_string():
    with pytest.raises(TypeError):
        commands.run("echo hi", timeout=5)  # type: ignore[arg-type]


def test_run_timeout_kills_the_whole_process_group():
    start = time.monotonic()
    result = commands.run(["sh", "-c", "sleep 97.3141 & sleep 98.2718"], timeout=1)
    elapsed = time.monotonic() - start
    assert result.timed_out and result.returncode is None and not result.ok
    assert elapsed < 20  # 1 s + at most the 2 s grace, generous for a shared machine
    assert live_processes_with("sleep 97.3141") == []
    assert live_processes_with("sleep 98.2718") == []


def test_run_ignores_sigterm_then_sigkill():
    result = commands.run(["sh", "-c", "trap '' TERM; sleep 96.1234 & wait"], timeout=0.5)
    assert result.timed_out
    assert live_processes_with("sleep 96.1234") == []


def test_run_ends_processes_left_behind_by_a_finished_command():
    result = commands.run(["sh", "-c", "sleep 95.4321 & exit 0"], timeout=30)
    assert result.returncode == 0
    assert live_processes_with("sleep 95.4321") == []


def test_run_abort_flag_stops_the_command():
    flag = threading.Event()
    timer = threading.Timer(0.5, flag.set)
    timer.start()
    start = time.monotonic()
    try:
        result = commands.run(["sleep", "94.777"], timeout=60, should_abort=flag.is_set)
    finally:
        timer.cancel()
    assert result.aborted and not result.timed_out and result.returncode is None
    assert time.monotonic() - start < 15
    assert live_processes_with("sleep 94.777") == []
