"""QueueSpec / CloudSpec: defaults, validation messages, round trip."""

from __future__ import annotations

import dataclasses

import pytest

from schedconfig.loader import DEFAULT_DIR, load_clouds, load_queues
from schedconfig.model import CloudSpec, ConfigError, QueueSpec


def test_defaults_are_derived_from_the_nickname() -> None:
    prod = QueueSpec.from_dict({"nickname": "SITE_X", "cloud": "CLOUDA"})
    assert (prod.siteid, prod.type, prod.ddm, prod.copytoolin) == (
        "SITE_X",
        "production",
        "SITE_X_DATADISK",
        "cp",
    )
    assert prod.retry is True and prod.status == "online"
    analy = QueueSpec.from_dict({"nickname": "ANALY_SITE_X", "cloud": "CLOUDA"})
    assert analy.type == "analysis" and analy.is_analysis


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ({"maxtmie": 3600}, "maxtmie", "did you mean 'maxtime'"),
        ({"status": "up"}, "status", "'online'"),
        ({"type": "batch"}, "type", "'production'"),
        ({"tier": "T0"}, "tier", "'T1'"),
        ({"system": "pbs"}, "system", "'slurm'"),
        ({"copytool": "scp"}, "copytool", "'xrdcp'"),
        ({"memory": "2000"}, "memory", "an integer"),
        ({"memory": True}, "memory", "an integer"),
        ({"memory": -1}, "memory", "below 0"),
        ({"corecount": 0}, "corecount", "below 1"),
        ({"retry": "TRUE"}, "retry", "true or false"),
        ({"releases": "21.0.1|22.0.0"}, "releases", "a list of strings"),
        ({"releases": ["21.0.1", 22]}, "releases", "a list of strings"),
        ({"siteid": "bad site"}, "siteid", "not a valid name"),
        ({"se_path": "relative/dir"}, "se_path", "absolute path or a root:// URL"),
    ],
)
def test_bad_queue_field_names_source_and_field(patch: dict, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        QueueSpec.from_dict({"nickname": "Q", "cloud": "C", **patch}, source="queues/Q.json")
    message = str(info.value)
    assert message.startswith(f"queues/Q.json: field '{field}': "), message
    assert words in message
    assert (info.value.source, info.value.field) == ("queues/Q.json", field)


@pytest.mark.parametrize("missing", ["nickname", "cloud"])
def test_missing_required_queue_field(missing: str) -> None:
    d = {"nickname": "Q", "cloud": "C"}
    del d[missing]
    with pytest.raises(ConfigError, match=rf"^q\.json: field '{missing}': missing; this field is required$"):
        QueueSpec.from_dict(d, source="q.json")


def test_queue_definition_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match=r"^q\.json: expected a JSON object"):
        QueueSpec.from_dict([{"nickname": "Q"}], source="q.json")  # type: ignore[arg-type]


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^QueueSpec: field 'status'"):
        QueueSpec(nickname="Q", cloud="C", status="down")
    assert QueueSpec(nickname="Q", cloud="C", releases=["a"]).releases == ("a",)  # type: ignore[arg-type]


def test_cloud_validation() -> None:
    with pytest.raises(ConfigError, match=r"^clouds\.json: field 'tier1': missing"):
        CloudSpec.from_dict({"name": "X"}, source="clouds.json")
    with pytest.raises(ConfigError, match=r"^clouds\.json: field 'status': 'down' is not one of"):
        CloudSpec.from_dict({"name": "X", "tier1": "S", "status": "down"}, source="clouds.json")
    with pytest.raises(ConfigError, match=r"^clouds\.json: field 'tier1SE': expected a list of strings"):
        CloudSpec.from_dict({"name": "X", "tier1": "S", "tier1SE": "S_DATADISK"}, source="clouds.json")
    cloud = CloudSpec.from_dict({"name": "X", "tier1": "S"})
    assert (cloud.transtimelo, cloud.transtimehi, cloud.tier1SE) == (2, 1, ())


def test_round_trip_of_every_default_queue_and_cloud() -> None:
    for spec in [*load_queues(DEFAULT_DIR), *load_clouds(DEFAULT_DIR)]:
        d = spec.to_dict()
        assert set(d) == {f.name for f in dataclasses.fields(spec)}
        assert type(spec).from_dict(d) == spec
        assert all(not isinstance(v, tuple) for v in d.values())  # JSON-ready


def test_round_trip_keeps_non_defaults() -> None:
    q = QueueSpec(nickname="Q", cloud="C", siteid="S", releases=("22.0.1",), se_path="root://h:1094//se",
                  copytool="xrdcp", copytoolin="cp", retry=False, status="brokeroff")  # fmt: skip
    assert QueueSpec.from_dict(q.to_dict()) == q
    assert q.to_dict()["releases"] == ["22.0.1"]
