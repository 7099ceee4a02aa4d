"""panda-ddm (python -m panda_server.ddm.local.cli) against the test database and schedconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from panda_server.ddm.local import LocalDDM, cli
from panda_server.ddm.local.rses import replica_url
from pilot.copytools.base import local_path
from pilot.util.checksum import adler32_file
from tests.ddm.conftest import name, payload

RSE = "CLOUDA_T1_DATADISK"


@pytest.fixture
def env(ddm_db, schedconfig_loaded, db_url, tmp_path, monkeypatch):
    """PANDA_* for the CLI: the test database, storage under tmp_path. Returns the storage root."""
    root = tmp_path / "storage"
    monkeypatch.setenv("PANDA_DATABASE_URL", db_url)
    monkeypatch.setenv("PANDA_STORAGE_ROOT", str(root))
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_register_files_copies_to_the_rucio_path_and_is_repeatable(env, ddm_db, tmp_path, capsys):
    local = tmp_path / "in" / "EVNT.01.pool.root"
    local.parent.mkdir()
    local.write_bytes(payload(20_000))
    ds = name("input")
    rc, out, _ = run(capsys, "register-files", ds, "--rse", RSE, "--close", str(local))
    assert rc == 0 and f"1 file(s) registered in {ds} at {RSE} (closed)" in out
    [f] = LocalDDM(ddm_db, {}).list_files(ds)
    assert (f.lfn, f.scope, f.fsize, f.checksum) == (
        local.name,
        "ddmtest",
        20_000,
        f"ad:{adler32_file(local)}",
    )
    on_se = Path(local_path(replica_url(("file://localhost", str(env / RSE)), RSE, f.scope, f.lfn)))
    assert on_se.read_bytes() == local.read_bytes()
    rc, _, _ = run(capsys, "register-files", ds, "--rse", RSE, str(on_se))  # in place, same GUID: no-op
    assert rc == 0 and LocalDDM(ddm_db, {}).list_files(ds) == [f]
    rc, out, _ = run(capsys, "replicas", ds)
    assert rc == 0 and f.guid in out and RSE in out
    rc, out, _ = run(capsys, "datasets")
    assert rc == 0 and ds in out and "closed" in out


def test_listings(env, ddm_db, capsys):
    ddm = LocalDDM(
        ddm_db, {RSE: ("file://localhost", "/x"), "CLOUDA_T2_1_DATADISK": ("file://localhost", "/y")}
    )
    ds = name()
    ddm.register_dataset(ds, rse=RSE)
    ddm.subscribe(ds, "CLOUDA_T2_1_DATADISK", callback="https://127.0.0.1/cb")
    rc, out, _ = run(capsys, "subscriptions", "--state", "queued")
    assert rc == 0 and ds in out and "0/0" in out and "waiting" in out
    rc, out, _ = run(capsys, "subscriptions", "--state", "done")
    assert rc == 0 and ds not in out
    rc, out, _ = run(capsys, "files", ds)
    assert rc == 0 and out.split() == ["LFN", "SCOPE", "GUID", "BYTES", "CHECKSUM"]


def test_errors_are_one_clear_line(env, tmp_path, capsys):
    missing = name("missing")
    rc, _, err = run(capsys, "files", missing)
    assert rc == 1 and err.strip() == f"panda-ddm files: dataset {missing} does not exist in DDM"
    local = tmp_path / "x.root"
    local.write_bytes(b"x")
    rc, _, err = run(capsys, "register-files", name(), "--rse", "NO_SUCH_DATADISK", str(local))
    assert rc == 1 and "unknown RSE 'NO_SUCH_DATADISK'" in err
    rc, _, err = run(capsys, "register-files", name(), "--rse", RSE, str(tmp_path / "absent.root"))
    assert rc == 1 and "absent.root is not a file" in err
    with pytest.raises(SystemExit):
        cli.main(["subscriptions", "--state", "bogus"])
