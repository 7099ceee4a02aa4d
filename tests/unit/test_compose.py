"""docker-compose.yml and Dockerfile, checked offline (no Docker engine runs here).

Two schema validators (reference/feasibility.md §7): check-jsonschema with the current
compose-spec schema (authoritative; from the `test` extra) and, where the binary exists, Debian's
docker-compose v1.29 `config -q`, which also resolves cross-references (depends_on, volumes).
Then the project's own rules, as `problems(doc)` so that the tests can show each rule firing on a
broken copy: published ports bind 127.0.0.1 only, every command is a console script of
pyproject.toml whose arguments its parser accepts, every daemon exists in DAEMONS (and every
daemon has a service), every PANDA_* variable is a Settings field, and the wiring (PKI, DB URL,
listeners, start order) is consistent.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML  # a dependency of check-jsonschema (test extra)

from panda_server.daemons.registry import DAEMONS
from panda_server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCS = ROOT / "docs" / "docker.md"

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# Variables read outside Settings: gunicorn_conf.py's listener switch and access log
GUNICORN_ONLY = {"PANDA_LISTEN", "PANDA_ACCESS_LOG"}
SETTINGS_VARS = {"PANDA_" + f.name.upper() for f in dataclasses.fields(Settings)}
# Executables of the image that are not project console scripts (gunicorn comes with the deps,
# the other two are copied from docker/ by the Dockerfile)
IMAGE_TOOLS = {"gunicorn", "panda-healthcheck", "panda-help"}
PANDA_SERVICES = {"pki", "migrate", "server-https", "server-http", "setupper", "adder"}
ONE_SHOT = {"pki", "migrate"}


def load(path: Path = COMPOSE) -> dict:
    return YAML(typ="safe").load(path.read_text())


def dump(doc: dict, path: Path) -> Path:
    """Write a (modified) copy as JSON, which is YAML to both validators and, unlike a YAML 1.2
    dump, keeps strings such as `restart: "no"` strings for v1's YAML 1.1 parser."""
    path.write_text(json.dumps(doc, indent=2))
    return path


# --- schema validators ---


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail("check-jsonschema is missing: pip install -e '.[test]'")
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def compose_v1(path: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):  # .ci/run installs it (scripts/system-deps.sh): missing is a failure
            pytest.fail("docker-compose is missing in CI; scripts/system-deps.sh should install it")
        pytest.skip(
            "docker-compose (v1) not installed: apt-get install -y --no-install-recommends docker-compose"
        )
    # --project-directory: a copy in tmp_path still resolves `build: .` against the checkout
    cmd = [binary, "--project-directory", str(ROOT), "-f", str(path), "config", "-q"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_compose_spec_schema_accepts_the_file():
    proc = check_jsonschema(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_v1_accepts_the_file():
    proc = compose_v1(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # no warnings, e.g. about unset variables


def test_compose_spec_schema_rejects_an_unknown_key(tmp_path):
    doc = load()
    doc["services"]["server-https"]["prots"] = ["127.0.0.1:25443:25443"]
    proc = check_jsonschema(dump(doc, tmp_path / "docker-compose.yml"))
    assert proc.returncode != 0
    assert "prots" in proc.stdout + proc.stderr


def test_validators_accept_an_unmodified_copy(tmp_path):
    # the copies below fail because of their breakage, not because of how they are written
    copy_path = dump(load(), tmp_path / "docker-compose.yml")
    assert check_jsonschema(copy_path).returncode == 0
    proc = compose_v1(copy_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("unknown key", "Unsupported config option for services.server-https: 'prots'"),
        ("undefined dependency", "depends on service 'nosuch' which is undefined"),
        ("undefined volume", '"nosuch:/nosuch:rw" is used in service "server-https" but no declaration'),
    ],
)
def test_compose_v1_rejects_a_broken_file(tmp_path, breakage, message):
    doc = load()
    service = doc["services"]["server-https"]
    if breakage == "unknown key":
        service["prots"] = ["127.0.0.1:25443:25443"]
    elif breakage == "undefined dependency":
        service["depends_on"]["nosuch"] = {"condition": "service_completed_successfully"}
    else:
        service["volumes"].append("nosuch:/nosuch")
    proc = compose_v1(dump(doc, tmp_path / "docker-compose.yml"))
    assert proc.returncode != 0, f"{breakage} accepted"
    assert message in proc.stdout + proc.stderr


# --- the project's own rules ---


def services(doc: dict) -> dict[str, dict]:
    return doc.get("services") or {}


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def commands(service: dict) -> list[list[str]]:
    """The argv of each program the service's command runs (`sh -c "a && b"` gives two)."""
    cmd = service.get("command")
    if cmd is None:
        return []
    argv = shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]
    if argv[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
        return [shlex.split(part) for part in re.split(r"&&|;", argv[2]) if part.strip()]
    return [argv]


def published(service: dict) -> list[tuple[str, str, str]]:
    """(host_ip, host_port, container_port) of each published port, short or long syntax."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append(
                (str(port.get("host_ip", "")), str(port.get("published", "")), str(port.get("target")))
            )
            continue
        parts = str(port).split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))  # a random host port on every interface
    return out


def volume_mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target → (source, read_only)."""
    out = {}
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            out[vol["target"]] = (vol.get("source", ""), bool(vol.get("read_only")))
        else:
            source, target, *mode = str(vol).split(":")
            out[target] = (source, "ro" in (mode[0].split(",") if mode else []))
    return out


def _parser_problems(argv: list[str]) -> str | None:
    """Parse argv with the console script's own argparse parser; None when it is accepted."""
    script, args = argv[0], argv[1:]
    if script == "panda-daemon":
        return (
            None
            if args[:1] and args[0] in DAEMONS
            else f"unknown daemon {args[:1]} (DAEMONS: {sorted(DAEMONS)})"
        )
    if script == "panda-server":
        from panda_server.cli import _parser as parser
    elif script == "panda-ca":
        from panda_server.ca import _parser as parser
    elif script == "panda-autopilot":
        from autopilot.cli import factory_parser as parser
    elif script == "panda-schedconfig":
        from schedconfig.cli import build_parser

        def parser():
            return build_parser(Settings())
    else:
        return f"no parser known for {script}"
    try:
        parser().parse_args(args)
    except SystemExit:
        return f"{shlex.join(argv)}: rejected by {script}'s argument parser"
    return None


def _gunicorn_problems(argv: list[str]) -> list[str]:
    out = []
    config = argv[argv.index("-c") + 1] if "-c" in argv else ""
    if not config.startswith("python:"):
        out.append(f"gunicorn config {config!r}: use -c python:<module> (no source tree in the image)")
    elif importlib.util.find_spec(config.removeprefix("python:")) is None:
        out.append(f"gunicorn config module {config} not found")
    app = argv[-1]
    if ":" not in app or importlib.util.find_spec(app.split(":")[0]) is None:
        out.append(f"gunicorn app {app!r} not found")
    return out


def problems(doc: dict, dockerfile: str | None = None) -> list[str]:
    dockerfile = DOCKERFILE.read_text() if dockerfile is None else dockerfile
    out: list[str] = []
    svcs = services(doc)
    settings = Settings()

    for name, svc in svcs.items():
        # 1. published ports: 127.0.0.1 only
        for host_ip, host_port, target in published(svc):
            if host_ip != "127.0.0.1":
                out.append(
                    f"{name}: port {host_port or '?'}:{target} is published on {host_ip or 'all interfaces'}"
                )
        # 2. commands: console scripts of pyproject, accepted by their parsers
        for argv in commands(svc):
            if argv[0] in SCRIPTS:
                if problem := _parser_problems(argv):
                    out.append(f"{name}: {problem}")
            elif argv[0] == "gunicorn":
                out.extend(f"{name}: {p}" for p in _gunicorn_problems(argv))
            elif svc.get("image", "").startswith("postgres"):
                pass
            else:
                out.append(f"{name}: {argv[0]} is not a console script in pyproject.toml {sorted(SCRIPTS)}")
        # 3. PANDA_* variables: Settings fields (gunicorn_conf's two are the exception)
        for key in environment(svc):
            if key.startswith("PANDA_") and key not in SETTINGS_VARS | GUNICORN_ONLY:
                out.append(f"{name}: {key} is not a Settings field")
        # healthcheck tools must be in the image
        test = (svc.get("healthcheck") or {}).get("test") or []
        tool = test[1] if isinstance(test, list) and test[:1] == ["CMD"] else ""
        if tool in IMAGE_TOOLS - {"gunicorn"} and f"/usr/local/bin/{tool}" not in dockerfile:
            out.append(f"{name}: healthcheck tool {tool} is not installed by the Dockerfile")

    # every daemon of the registry runs, and only those
    daemons = {
        argv[1] for svc in svcs.values() for argv in commands(svc) if argv[0] == "panda-daemon" and argv[1:]
    }
    for missing in sorted(set(DAEMONS) - daemons):
        out.append(
            f"daemon {missing} (panda_server/daemons/registry.py) has no `panda-daemon {missing}` service"
        )

    out.extend(_wiring_problems(svcs, settings))
    for line in re.findall(r"^ENV\s+(.+?)(?<!\\)$", dockerfile.replace("\\\n", " "), re.M):
        for key in re.findall(r"\b(PANDA_[A-Z_]+)=", line):
            if key not in SETTINGS_VARS | GUNICORN_ONLY:
                out.append(f"Dockerfile: {key} is not a Settings field")
    return out


def _wiring_problems(svcs: dict[str, dict], settings: Settings) -> list[str]:
    out = []
    missing = (PANDA_SERVICES | {"postgres"}) - set(svcs)
    if missing:
        return [f"services missing: {sorted(missing)}"]
    pg = svcs["postgres"]
    pg_env = environment(pg)
    if published(pg):
        out.append("postgres: must not publish a port")
    if "pg_isready" not in str((pg.get("healthcheck") or {}).get("test")):
        out.append("postgres: needs a pg_isready healthcheck")
    if not any(src and not src.startswith((".", "/")) for src, _ in volume_mounts(pg).values()):
        out.append("postgres: data must live in a named volume")

    for name in sorted(PANDA_SERVICES):
        svc, env = svcs[name], environment(svcs[name])
        url = urlsplit(env.get("PANDA_DATABASE_URL", "").replace("postgresql+psycopg", "postgresql", 1))
        if (url.hostname, url.port, url.path.lstrip("/"), url.username) != (
            "postgres", 5432, pg_env.get("POSTGRES_DB"), pg_env.get("POSTGRES_USER")):  # fmt: skip
            out.append(f"{name}: PANDA_DATABASE_URL does not point at the postgres service's database")
        if url.password != pg_env.get("POSTGRES_PASSWORD") or "${PANDA_DB_PASSWORD" not in str(url.password):
            out.append(f"{name}: the DB password must be ${{PANDA_DB_PASSWORD:-...}}, the same as postgres's")
        if env.get("PANDA_PKI_DIR") != "/pki":
            out.append(f"{name}: PANDA_PKI_DIR must be /pki")
        deps = svc.get("depends_on") or {}
        if name == "migrate":
            if (deps.get("postgres") or {}).get("condition") != "service_healthy":
                out.append("migrate: must wait for postgres to be healthy")
        elif name not in ONE_SHOT:
            for first in sorted(ONE_SHOT):
                if (
                    not isinstance(deps, dict)
                    or (deps.get(first) or {}).get("condition") != "service_completed_successfully"
                ):
                    out.append(f"{name}: must start after {first} completed successfully")
        if name in ONE_SHOT and svc.get("restart", "no") != "no":
            out.append(f"{name}: a one-shot must not restart")

    pki_argv = commands(svcs["pki"])[0]
    hosts = {pki_argv[i + 1] for i, a in enumerate(pki_argv) if a == "--host"}
    if volume_mounts(svcs["pki"]).get("/pki", ("", False))[0] != "pki" or "--dir" not in pki_argv \
            or pki_argv[pki_argv.index("--dir") + 1] != "/pki":  # fmt: skip
        out.append("pki: must write `panda-ca init --dir /pki` into the named volume pki")

    for name, scheme, port in (
        ("server-https", "https", settings.https_port),
        ("server-http", "http", settings.http_port),
    ):
        svc, env = svcs[name], environment(svcs[name])
        if env.get("PANDA_LISTEN") != scheme:
            out.append(f"{name}: PANDA_LISTEN must be {scheme}")
        if env.get("PANDA_HOST") != "0.0.0.0":
            out.append(
                f"{name}: PANDA_HOST must be 0.0.0.0 inside the container (publish to 127.0.0.1 instead)"
            )
        want = int(env.get(f"PANDA_{scheme.upper()}_PORT", port))
        if [(h, p, t) for h, p, t in published(svc)] != [("127.0.0.1", str(want), str(want))]:
            out.append(f"{name}: must publish exactly 127.0.0.1:{want}:{want}")
        if "panda-healthcheck" not in str((svc.get("healthcheck") or {}).get("test")):
            out.append(f"{name}: needs the isAlive healthcheck (panda-healthcheck)")
    https, https_env = svcs["server-https"], environment(svcs["server-https"])
    if volume_mounts(https).get("/pki") != ("pki", True):
        out.append("server-https: must mount the pki volume read-only at /pki")
    server_name = https_env.get("PANDA_SERVER_NAME", "")
    aliases = ((https.get("networks") or {}).get("default") or {}).get("aliases") or []
    if server_name not in hosts or server_name not in set(aliases) | {"server-https"}:
        out.append(
            f"PANDA_SERVER_NAME {server_name!r} must be a host certificate SAN and resolve to server-https"
        )
    if not {"localhost", "127.0.0.1"} <= hosts:
        out.append("pki: the host certificate must cover localhost and 127.0.0.1 (clients on the host)")
    return out


def test_project_rules_hold():
    assert problems(load()) == []


def test_every_console_script_is_used_or_known():
    used = {argv[0] for svc in services(load()).values() for argv in commands(svc)}
    assert (
        {"panda-server", "panda-ca", "panda-schedconfig", "panda-daemon"}
        <= used
        <= set(SCRIPTS) | IMAGE_TOOLS
    )


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d["services"]["server-https"].update(ports=["25443:25443"]), "all interfaces"),
        (
            lambda d: d["services"]["server-http"].update(ports=[{"target": 25080, "published": 25080}]),
            "all interfaces",
        ),
        (
            lambda d: d["services"]["postgres"].update(ports=["127.0.0.1:5432:5432"]),
            "postgres: must not publish",
        ),
        (lambda d: d["services"]["adder"].update(command=["panda-daemon", "nosuch"]), "unknown daemon"),
        (lambda d: d["services"]["setupper"].update(command=["panda-nosuch", "run"]), "not a console script"),
        (
            lambda d: d["services"]["migrate"].update(
                command=["sh", "-c", "panda-server db upgrade && panda-schedconfig synk"]
            ),
            "rejected by panda-schedconfig",
        ),
        (
            lambda d: d["services"]["pki"]["command"].__setitem__(slice(1, 2), ["mint"]),
            "rejected by panda-ca",
        ),
        (
            lambda d: d["services"]["server-https"]["environment"].update(PANDA_NO_SUCH="1"),
            "PANDA_NO_SUCH is not a Settings",
        ),
        (lambda d: d["services"].pop("setupper"), "daemon setupper"),
        (
            lambda d: d["services"]["server-https"].update(
                command=["gunicorn", "-c", "panda_server/gunicorn_conf.py", "x:y"]
            ),
            "use -c python:",
        ),
        (lambda d: d["services"]["server-https"].update(volumes=["pki:/pki"]), "read-only"),
        (
            lambda d: d["services"]["server-https"]["environment"].update(PANDA_LISTEN="http"),
            "PANDA_LISTEN must be https",
        ),
        (lambda d: d["services"]["adder"]["depends_on"].pop("migrate"), "adder: must start after migrate"),
        (
            lambda d: d["services"]["migrate"]["environment"].update(
                PANDA_DATABASE_URL="postgresql+psycopg://panda:secret@postgres:5432/panda"
            ),
            "PANDA_DB_PASSWORD",
        ),
    ],
    ids=[
        "port-all-interfaces",
        "long-port-all-interfaces",
        "postgres-port",
        "daemon",
        "script",
        "subcommand",
        "panda-ca-args",
        "env-var",
        "daemon-without-service",
        "gunicorn-config-path",
        "pki-rw",
        "listen",
        "start-order",
        "literal-password",
    ],  # fmt: skip
)
def test_project_rules_fire_on_a_broken_copy(breakage, expected):
    doc = copy.deepcopy(load())
    # give each service its own environment mapping (YAML anchors share one object)
    for svc in doc["services"].values():
        if "environment" in svc:
            svc["environment"] = dict(environment(svc))
    breakage(doc)
    found = problems(doc)
    assert any(expected in p for p in found), found


def test_dockerfile_env_checked():
    found = problems(load(), DOCKERFILE.read_text() + "\nENV PANDA_NOT_A_SETTING=1\n")
    assert found == ["Dockerfile: PANDA_NOT_A_SETTING is not a Settings field"]


def test_dockerfile_runs_as_non_root_without_secrets():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "the runtime stage must end as a non-root user"
    assert not re.search(r"(?i)^(ENV|ARG)\s+.*(PASSWORD|SECRET|TOKEN)", text, re.M)
    assert not re.search(r"^(COPY|ADD)\s+.*\.(pem|proxy|key)\b", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "var", "**/*.pem"} <= set(ignored)


def test_interpolated_variables_are_documented():
    variables = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    assert "PANDA_DB_PASSWORD" in variables
    docs = DOCS.read_text()
    assert [v for v in sorted(variables) if v not in docs] == []
