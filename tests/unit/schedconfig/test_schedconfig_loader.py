"""Loading the queue files: the default topology, and an error naming file and field for each bad file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from schedconfig.loader import DEFAULT_DIR, load_clouds, load_queues, load_topology, validate_topology
from schedconfig.model import ConfigError, QueueSpec


@pytest.fixture
def queue_dir(tmp_path: Path) -> Path:
    """A writable copy of the default topology."""
    return Path(shutil.copytree(DEFAULT_DIR, tmp_path / "queues"))


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_default_topology_loads_and_validates() -> None:
    queues, clouds = load_topology(DEFAULT_DIR)
    by_name = {q.nickname: q for q in queues}
    assert set(by_name) == {"CLOUDA_T1", "ANALY_CLOUDA_T1", "CLOUDA_T2_1", "ANALY_CLOUDA_T2_1",
                            "CLOUDB_T1", "ANALY_CLOUDB_T1", "CLOUDB_T2_1", "CLOUDA_T2_2"}  # fmt: skip
    assert {c.name: c.tier1 for c in clouds} == {"CLOUDA": "CLOUDA_T1", "CLOUDB": "CLOUDB_T1"}
    for q in queues:
        assert q.siteid == q.nickname  # ANALY_ queues are PanDA sites of their own
        assert q.type == ("analysis" if q.nickname.startswith("ANALY_") else "production")
        assert (q.status, q.retry, q.nqueue, q.system, q.copytool, q.copytoolin) == (
            "online",
            True,
            2,
            "local",
            "cp",
            "cp",
        )
        assert 2000 <= q.memory <= 4000 and 3600 <= q.maxtime <= 86400
    assert by_name["ANALY_CLOUDA_T1"].ddm == "CLOUDA_T1_DATADISK"
    assert by_name["ANALY_CLOUDA_T2_1"].ddm == "CLOUDA_T2_1_DATADISK"
    assert by_name["CLOUDB_T2_1"].ddm == "CLOUDB_T2_1_DATADISK"
    assert by_name["CLOUDA_T1"].tier == "T1" and by_name["CLOUDB_T2_1"].tier == "T2"


def test_unknown_field(queue_dir: Path) -> None:
    _edit(queue_dir / "CLOUDA_T1.json", copytol="cp")
    with pytest.raises(
        ConfigError, match=r"CLOUDA_T1\.json: field 'copytol': unknown field; did you mean 'copytool'"
    ):
        load_queues(queue_dir)


def test_bad_enum(queue_dir: Path) -> None:
    _edit(queue_dir / "CLOUDB_T2_1.json", status="running")
    with pytest.raises(
        ConfigError, match=r"CLOUDB_T2_1\.json: field 'status': 'running' is not one of 'online'"
    ):
        load_queues(queue_dir)


def test_missing_nickname(queue_dir: Path) -> None:
    path = queue_dir / "CLOUDA_T2_1.json"
    data = json.loads(path.read_text())
    del data["nickname"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"CLOUDA_T2_1\.json: field 'nickname': missing"):
        load_queues(queue_dir)


def test_wrong_file_name(queue_dir: Path) -> None:
    (queue_dir / "CLOUDA_T2_1.json").rename(queue_dir / "CLOUDA_T2_2.json")
    with pytest.raises(ConfigError) as info:
        load_queues(queue_dir)
    assert str(info.value).startswith(f"{queue_dir / 'CLOUDA_T2_2.json'}: field 'nickname': is 'CLOUDA_T2_1'")
    assert "rename the file to 'CLOUDA_T2_1.json'" in str(info.value)


def test_malformed_json_names_file_and_line(queue_dir: Path) -> None:
    (queue_dir / "CLOUDA_T1.json").write_text(
        '{\n  "nickname": "CLOUDA_T1",\n  "cloud": "CLOUDA"\n  "tier": "T1"\n}\n'
    )
    with pytest.raises(ConfigError, match=r"CLOUDA_T1\.json:4: malformed JSON at line 4 column 3"):
        load_queues(queue_dir)


def test_duplicate_key(queue_dir: Path) -> None:
    (queue_dir / "CLOUDA_T1.json").write_text(
        '{"nickname": "CLOUDA_T1", "cloud": "CLOUDA", "cloud": "CLOUDB"}'
    )
    with pytest.raises(ConfigError, match=r"CLOUDA_T1\.json: field 'cloud': defined twice"):
        load_queues(queue_dir)


def test_queue_in_unknown_cloud(queue_dir: Path) -> None:
    _edit(queue_dir / "ANALY_CLOUDB_T1.json", cloud="CLOUDC")
    with pytest.raises(
        ConfigError,
        match=r"ANALY_CLOUDB_T1\.json: field 'cloud': cloud 'CLOUDC' is not defined in clouds\.json",
    ):
        load_topology(queue_dir)


def test_cloud_whose_tier1_is_not_a_site(queue_dir: Path) -> None:
    path = queue_dir / "clouds.json"
    clouds = json.loads(path.read_text())
    clouds[1]["tier1"] = "CLOUDA_T1"  # a site, but of the other cloud
    path.write_text(json.dumps(clouds))
    with pytest.raises(
        ConfigError, match=r"clouds\.json \(cloud CLOUDB\): field 'tier1': 'CLOUDA_T1' is not the siteid"
    ):
        load_topology(queue_dir)


def test_tier1se_must_be_a_queue_endpoint(queue_dir: Path) -> None:
    path = queue_dir / "clouds.json"
    clouds = json.loads(path.read_text())
    clouds[0]["tier1SE"] = ["CLOUDA_T1_TAPE"]
    path.write_text(json.dumps(clouds))
    with pytest.raises(ConfigError, match=r"clouds\.json \(cloud CLOUDA\): field 'tier1SE'"):
        load_topology(queue_dir)


def test_bad_cloud_field_names_the_cloud(queue_dir: Path) -> None:
    path = queue_dir / "clouds.json"
    clouds = json.loads(path.read_text())
    clouds[0]["weigth"] = 3
    path.write_text(json.dumps(clouds))
    with pytest.raises(ConfigError, match=r"clouds\.json \(cloud CLOUDA\): field 'weigth': unknown field"):
        load_clouds(queue_dir)


def test_clouds_as_an_object(queue_dir: Path) -> None:
    path = queue_dir / "clouds.json"
    clouds = json.loads(path.read_text())
    path.write_text(json.dumps({c.pop("name"): c for c in clouds}))
    assert [c.name for c in load_clouds(queue_dir)] == ["CLOUDA", "CLOUDB"]
    path.write_text(json.dumps({"CLOUDA": {"name": "CLOUDX", "tier1": "CLOUDA_T1"}}))
    with pytest.raises(
        ConfigError, match=r"\(cloud CLOUDA\): field 'name': is 'CLOUDX' but the key is 'CLOUDA'"
    ):
        load_clouds(queue_dir)


def test_missing_clouds_file(queue_dir: Path) -> None:
    (queue_dir / "clouds.json").unlink()
    with pytest.raises(ConfigError, match=r"clouds\.json: missing"):
        load_topology(queue_dir)


def test_site_in_two_clouds_and_duplicate_nicknames() -> None:
    queues, clouds = load_topology(DEFAULT_DIR)
    stray = QueueSpec(nickname="CLOUDA_T1_2", siteid="CLOUDA_T1", cloud="CLOUDB")
    with pytest.raises(
        ConfigError, match=r"CLOUDA_T1_2\.json: field 'cloud': site 'CLOUDA_T1' is in cloud 'CLOUDB'"
    ):
        validate_topology([*queues, stray], clouds)
    with pytest.raises(
        ConfigError, match=r"CLOUDA_T1\.json: field 'nickname': 'CLOUDA_T1' is defined more than once"
    ):
        validate_topology([*queues, queues[3]], clouds)


def test_queues_sharing_an_endpoint_agree_on_its_path() -> None:
    queues, clouds = load_topology(DEFAULT_DIR)
    odd = QueueSpec(
        nickname="CLOUDA_T1_B",
        siteid="CLOUDA_T1",
        cloud="CLOUDA",
        ddm="CLOUDA_T1_DATADISK",
        se_path="/elsewhere",
    )
    with pytest.raises(ConfigError, match=r"CLOUDA_T1_B\.json: field 'se_path'"):
        validate_topology([*queues, odd], clouds)
