"""pilot.watchdog decisions (tables) and the pilot.probes measurements (a tmp dir)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pilot import probes, watchdog
from pilot.watchdog import Limits, WatchSample

MB = 1024 * 1024
GB = 1024 * MB
NOW = 1_700_000_000.0
L = Limits(workdir_max_mb=1000, rss_max_kb=2 * 1024 * 1024)


def _code(verdict):
    return verdict[0] if verdict else None


@pytest.mark.parametrize(
    ("newest", "start", "limits", "code"),
    [
        (NOW - 100, NOW - 10_000, Limits(), None),  # a file changed recently
        (NOW - 7200, NOW - 10_000, Limits(), None),  # exactly at the limit: not yet
        (NOW - 7201, NOW - 10_000, Limits(), 1150),
        (0.0, NOW - 7201, Limits(), 1150),  # no file at all: measured from the payload start
        (NOW - 90_000, NOW - 100, Limits(), None),  # old inputs do not count against the payload
        (NOW - 61, NOW - 1000, Limits(looping_limit=60), 1150),
        (NOW - 61, NOW - 100, Limits(looping_limit=60, looping_grace_start=900), None),  # too early
        (NOW - 1000, NOW - 1000, Limits(looping_limit=60, looping_grace_start=900), 1150),
    ],
)
def test_looping(newest, start, limits, code):
    verdict = watchdog.looping(newest, start, NOW, limits)
    assert _code(verdict) == code
    if verdict:
        assert f"limit {limits.looping_limit:.0f} s" in verdict[1]


@pytest.mark.parametrize(
    ("size", "limits", "code"),
    [
        (10 * GB, Limits(), None),  # no maxwdir: no check
        (1000 * MB, L, None),
        (1100 * MB, L, None),  # inside the 10 % grace
        (1100 * MB + 1, L, 1104),
    ],
)
def test_workdir_size(size, limits, code):
    verdict = watchdog.workdir_size(size, limits)
    assert _code(verdict) == code
    if verdict:
        assert "1100 MB" in verdict[1] and "maxwdir 1000 MB" in verdict[1]


@pytest.mark.parametrize(
    ("free", "code"), [(5 * GB, None), (1024 * MB, None), (1024 * MB - 1, 1098), (0, 1098)]
)
def test_local_space(free, code):
    verdict = watchdog.local_space(free, Limits())
    assert _code(verdict) == code
    if verdict:
        assert "minimum of 1024 MB" in verdict[1]


@pytest.mark.parametrize(
    ("rss_kb", "limits", "code"),
    [
        (10**9, Limits(), None),  # no memory limit
        (2 * 1024 * 1024, L, None),
        (2 * 1024 * 1024 + 1, L, 1235),
        (600, Limits(rss_max_kb=500), 1235),
    ],
)
def test_memory(rss_kb, limits, code):
    verdict = watchdog.memory(rss_kb, limits)
    assert _code(verdict) == code
    if verdict:
        assert "above the limit" in verdict[1]


@pytest.mark.parametrize(("size", "code"), [(0, None), (2 * GB, None), (2 * GB + 1, 1106)])
def test_stdout_size(size, code):
    assert _code(watchdog.stdout_size(size, Limits())) == code


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({}, None),
        ({"a.root": 10, "b.root": 500 * GB}, None),
        ({"a.root": 10, "b.root": 500 * GB + 1}, (1124, "b.root")),
        ({"a.root": 0, "b.root": 500 * GB + 1}, (1350, "a.root")),  # the first bad file wins
        ({"a.root": 5, "empty.pool": 0}, (1350, "empty.pool")),
    ],
)
def test_output_sizes(sizes, expected):
    verdict = watchdog.output_sizes(sizes, Limits())
    if expected is None:
        assert verdict is None
    else:
        assert verdict[0] == expected[0] and expected[1] in verdict[1]


@pytest.mark.parametrize(
    ("ram", "queue", "kw", "expected"),
    [
        (0, {}, {}, Limits(looping_limit=12 * 3600)),
        (0, {}, {"analysis": True}, Limits(looping_limit=3 * 3600)),
        (0, {"maxwdir": "14336", "maxrss": 2000}, {}, Limits(43200, 0, 14336, 1024, 2000 * 1024)),
        (4000, {"maxrss": 2000}, {}, Limits(looping_limit=43200, rss_max_kb=4000 * 1024)),  # job wins
        (0, {"maxwdir": 0, "maxrss": None}, {}, Limits(looping_limit=43200)),  # 0/null: no limit
        (0, {}, {"max_cpu_count": 3600}, Limits(looping_limit=43200)),  # < 2 h: the default
        (0, {}, {"max_cpu_count": 3 * 3600}, Limits(looping_limit=3 * 3600)),  # ≥ 2 h: maxCpuCount
        (0, {}, {"max_cpu_count": 7200, "analysis": True}, Limits(looping_limit=7200)),
        (0, {}, {"max_cpu_count": 100_000, "analysis": True}, Limits(looping_limit=100_000)),
        (0, {}, {"looping_limit": 60, "max_cpu_count": 100_000}, Limits(looping_limit=60)),  # override
        (0, {}, {"looping_limit": None}, Limits(looping_limit=43200)),
    ],
)
def test_limits_for(ram, queue, kw, expected):
    assert watchdog.limits_for(ram, queue, **kw) == expected


def _sample(**kw) -> WatchSample:
    base = {
        "newest_mtime": NOW - 10,
        "payload_start": NOW - 100,
        "workdir_bytes": MB,
        "free_bytes": 10 * GB,
        "rss_kb": 1024,
        "stdout_bytes": 100,
    }
    return WatchSample(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({}, None),
        ({"newest_mtime": NOW - 8000, "payload_start": NOW - 9000}, 1150),
        ({"workdir_bytes": 2000 * MB}, 1104),
        ({"free_bytes": MB}, 1098),
        ({"rss_kb": 3 * 1024 * 1024}, 1235),
        ({"stdout_bytes": 3 * GB}, 1106),
        ({"free_bytes": MB, "workdir_bytes": 2000 * MB, "rss_kb": 3 * 1024 * 1024}, 1098),  # order
        ({"workdir_bytes": 2000 * MB, "stdout_bytes": 3 * GB, "rss_kb": 3 * 1024 * 1024}, 1104),
        ({"stdout_bytes": 3 * GB, "rss_kb": 3 * 1024 * 1024, "newest_mtime": 0.0}, 1106),
        ({"rss_kb": 3 * 1024 * 1024, "newest_mtime": 0.0, "payload_start": NOW - 9000}, 1235),
        (dict.fromkeys(("newest_mtime", "workdir_bytes", "free_bytes", "rss_kb", "stdout_bytes")), None),
    ],
)
def test_check_all(kw, code):
    assert _code(watchdog.check_all(_sample(**kw), L, NOW)) == code


def test_probes_on_a_tmp_dir(tmp_path: Path):
    job = tmp_path / "job"
    (job / "sub" / "deeper").mkdir(parents=True)
    files = {"out.root": 1000, "sub/log.txt": 300, "sub/deeper/x.dat": 50, "pilotlog.txt": 7, "run.py": 9}
    for name, size in files.items():
        (job / name).write_bytes(b"x" * size)
    os.link(job / "out.root", job / "sub" / "hardlink.root")  # counted once
    (job / "link").symlink_to(tmp_path)  # never followed
    (tmp_path / "outside.bin").write_bytes(b"x" * 10_000)
    for i, name in enumerate(files):
        os.utime(job / name, (NOW - 1000 + i, NOW - 1000 + i))
    os.utime(job / "out.root", (NOW - 500, NOW - 500))  # newest of the payload's files
    os.utime(job / "pilotlog.txt", (NOW, NOW))  # ignored: the pilot writes it
    os.utime(job / "run.py", (NOW, NOW))  # ignored
    assert probes.newest_mtime(job) == NOW - 500
    assert probes.newest_mtime(job, ignore=()) == NOW
    assert probes.newest_mtime(tmp_path / "missing") == 0.0
    assert probes.dir_size(job) == sum(files.values())
    assert probes.dir_size(job, max_files=2) < sum(files.values())  # bounded walk: a lower bound
    assert probes.free_bytes(job) > 0
    assert probes.free_bytes(tmp_path / "missing") is None
    assert probes.file_size(job / "sub" / "log.txt") == 300
    assert probes.file_size(job / "nope") is None
