"""The queuedata and ddmendpoints documents the real pilot parses (reference/pilot.md §4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from schedconfig.export import ACTIVITIES, ddmendpoints, export_all, queuedata, se_location
from schedconfig.loader import DEFAULT_DIR, load_topology
from schedconfig.model import QueueSpec

# Keys of the minimal queuedata that worked with panda-pilot 3.7 and pilot3 3.11
PILOT_KEYS = {
    "nickname", "panda_resource", "atlas_site", "state", "status", "type", "copytools", "acopytools",
    "astorages", "catchall", "container_type", "container_options", "maxwdir", "maxrss", "maxtime",
    "maxinputsize", "timefloor", "corecount", "params", "environ", "direct_access_lan", "direct_access_wan",
    "allow_lan", "allow_wan", "is_cvmfs", "pledgedcpu", "cmtconfig", "appdir",
}  # fmt: skip
EVERY_ACTIVITY = {"pr", "pw", "pl", "read_lan", "write_lan", "default", "w"}


@pytest.fixture(scope="module")
def queues() -> list[QueueSpec]:
    return load_topology(DEFAULT_DIR)[0]


def test_queuedata_of_every_default_queue(queues: list[QueueSpec], tmp_path: Path) -> None:
    for q in queues:
        doc = queuedata(q, storage_root=tmp_path)
        assert PILOT_KEYS <= set(doc), PILOT_KEYS - set(doc)
        assert doc["panda_resource"] == q.siteid and doc["nickname"] == q.nickname
        assert doc["state"] == "ACTIVE" and doc["status"] == "online"
        assert EVERY_ACTIVITY <= set(doc["acopytools"]) and EVERY_ACTIVITY <= set(doc["astorages"])
        assert set(doc["acopytools"]) == set(ACTIVITIES) == set(doc["astorages"])
        assert all(v == [q.ddm] for v in doc["astorages"].values())
        used = {tool for tools in doc["acopytools"].values() for tool in tools}
        assert used == set(doc["copytools"]) and all(v == {"setup": ""} for v in doc["copytools"].values())
        assert (doc["maxrss"], doc["maxtime"], doc["retry"]) == (q.memory, q.maxtime, q.retry)
        json.dumps(doc)


def test_cp_is_exported_as_the_pilot3_mv_module_with_final_destination(queues: list[QueueSpec]) -> None:
    doc = queuedata(queues[0], storage_root="/se")
    assert doc["copytools"] == {"mv": {"setup": ""}}
    assert doc["catchall"] == "mv_final_destination"
    assert (doc["copytool"], doc["copytoolin"]) == ("cp", "cp")  # classic keys for our own pilot


def test_stage_in_and_stage_out_tools_are_kept_apart() -> None:
    q = QueueSpec(nickname="Q", cloud="C", copytool="xrdcp", copytoolin="mv")
    doc = queuedata(q, storage_root="/se")
    assert doc["acopytools"]["pr"] == doc["acopytools"]["read_lan"] == ["mv"]
    assert doc["acopytools"]["pw"] == doc["acopytools"]["write_lan"] == doc["acopytools"]["pl"] == ["xrdcp"]
    assert doc["acopytools"]["default"] == ["xrdcp", "mv"]
    assert doc["catchall"] == ""


def test_ddmendpoints_of_the_default_topology(queues: list[QueueSpec], tmp_path: Path) -> None:
    endpoints = ddmendpoints(queues, storage_root=tmp_path)
    assert set(endpoints) == {
        "CLOUDA_T1_DATADISK",
        "CLOUDA_T2_1_DATADISK",
        "CLOUDA_T2_2_DATADISK",
        "CLOUDB_T1_DATADISK",
        "CLOUDB_T2_1_DATADISK",
    }
    assert sorted(e["id"] for e in endpoints.values()) == [1, 2, 3, 4, 5]
    for name, e in endpoints.items():
        assert e["name"] == name and e["is_deterministic"] is True and e["state"] == "ACTIVE"
        assert e["type"] == "DATADISK" and e["rprotocols"] == {} and e["resource"] == {}
        for activity in ("read_lan", "read_wan", "write_lan", "write_wan"):
            assert e["arprotocols"][activity] == [
                {"endpoint": "file://localhost", "path": str(tmp_path / name), "flavour": "", "id": e["id"]}
            ]
    # the analysis queue shares the T1's endpoint, whose site is the production site
    assert endpoints["CLOUDA_T1_DATADISK"]["site"] == "CLOUDA_T1"


def test_se_location() -> None:
    q = QueueSpec(nickname="Q", cloud="C")
    assert se_location(q, storage_root="/data/se") == ("file://localhost", "/data/se/Q_DATADISK")
    q = QueueSpec(nickname="Q", cloud="C", se_path="/srv/q")
    assert se_location(q, storage_root="/data/se") == ("file://localhost", "/srv/q")
    q = QueueSpec(nickname="Q", cloud="C", se_path="root://localhost:1094//data/q")
    assert se_location(q, storage_root="/data/se") == ("root://localhost:1094", "//data/q")
    endpoint = ddmendpoints([q], storage_root="/x")["Q_DATADISK"]
    assert endpoint["arprotocols"]["write_lan"][0]["endpoint"] == "root://localhost:1094"


def test_export_all_writes_every_document(queues: list[QueueSpec], tmp_path: Path) -> None:
    written = export_all(queues, tmp_path / "out", tmp_path / "se")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        [f"{q.nickname}.all.json" for q in queues] + ["ddmendpoints.json", "pandaqueues.json"]
    )
    assert len(written) == len(names)
    doc = json.loads((tmp_path / "out" / "ANALY_CLOUDA_T1.all.json").read_text())
    assert doc["panda_resource"] == "ANALY_CLOUDA_T1" and doc["astorages"]["pw"] == ["CLOUDA_T1_DATADISK"]
    endpoints = json.loads((tmp_path / "out" / "ddmendpoints.json").read_text())
    assert endpoints["CLOUDA_T1_DATADISK"]["arprotocols"]["write_lan"][0]["path"] == str(
        tmp_path / "se" / "CLOUDA_T1_DATADISK"
    )
    pandaqueues = json.loads((tmp_path / "out" / "pandaqueues.json").read_text())
    assert pandaqueues["CLOUDB_T2_1"] == json.loads((tmp_path / "out" / "CLOUDB_T2_1.all.json").read_text())


def test_light_modules_import_only_the_stdlib() -> None:
    code = (
        "import sys; import schedconfig.model, schedconfig.loader, schedconfig.export\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'flask', 'panda_server', 'psycopg'))\n"
        "assert not heavy, heavy"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root)})


def test_sync_module_imports() -> None:
    import schedconfig.sync as sync

    assert callable(sync.sync) and callable(sync.read_queues)
