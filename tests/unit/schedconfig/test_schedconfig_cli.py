"""panda-schedconfig validate / export / --help (sync needs a DB: tests/db)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from schedconfig.cli import main
from schedconfig.loader import DEFAULT_DIR
from schedconfig.model import QueueSpec
from schedconfig.sync import cloud_row, queue_row


def test_validate_prints_one_line_per_queue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--dir", str(DEFAULT_DIR)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9 and lines[-1].startswith("8 queues, 2 clouds")
    assert lines[0].startswith("ANALY_CLOUDA_T1 ")


def test_validate_reports_the_error_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue_dir = Path(shutil.copytree(DEFAULT_DIR, tmp_path / "q"))
    (queue_dir / "CLOUDA_T1.json").write_text('{"nickname": "CLOUDA_T1", "cloud": "CLOUDA", "memroy": 1}')
    assert main(["validate", "--dir", str(queue_dir)]) == 2
    err = capsys.readouterr().err
    assert "CLOUDA_T1.json: field 'memroy': unknown field; did you mean 'memory'?" in err


def test_validate_uses_panda_schedconfig_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PANDA_SCHEDCONFIG_DIR", str(tmp_path))
    assert main(["validate"]) == 2  # empty directory: no clouds.json


def test_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cache"
    assert (
        main(["export", "--dir", str(DEFAULT_DIR), "--out", str(out), "--storage-root", str(tmp_path / "se")])
        == 0
    )
    assert "wrote 10 files" in capsys.readouterr().out
    doc = json.loads((out / "CLOUDA_T1.all.json").read_text())
    assert doc["nickname"] == "CLOUDA_T1" and doc["state"] == "ACTIVE"


def test_help_names_commands_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for word in ("validate", "export", "sync", "PANDA_SCHEDCONFIG_DIR", "PANDA_DATABASE_URL"):
        assert word in text


def test_rows_written_by_sync() -> None:
    import datetime as dt

    now = dt.datetime(2008, 6, 1, 12, 0)
    q = QueueSpec(nickname="ANALY_X", cloud="C", retry=False, memory=2000)
    row = queue_row(q, now)
    assert (row["siteid"], row["type"], row["retry"], row["memory"], row["lastmod"]) == (
        "ANALY_X",
        "analysis",
        "FALSE",
        2000,
        now,
    )
    assert QueueSpec.from_dict(row["data"]) == q
    from schedconfig.model import CloudSpec

    c = cloud_row(CloudSpec(name="C", tier1="X", tier1SE=("A", "B"), validation=True), now)
    assert (c["tier1SE"], c["validation"], c["fasttrack"], c["status"]) == ("A,B", "true", "false", "online")
