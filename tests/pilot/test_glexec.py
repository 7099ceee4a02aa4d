"""pilot.glexec and the file handling that makes identity switching safe, with real accounts.

The accounts (pandauser1, pandapilot) are created with useradd when missing; tests that switch
identities need root and are skipped otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilot import cli, config, glexec, workdir
from pilot.errors import PilotFailure
from pilot.job import parse
from pilot.wrapper import transfers
from pilot.wrapper.payload import run_payload
from pilot.wrapper.runjob import Outcome, _check_outputs
from tests.support import unprivileged

JANE = "/DC=org/DC=pandawms/OU=Users/CN=Jane Doe"
MAP = f"""# grid-mapfile
"{JANE}" pandauser1,pandapilot

"/DC=org/DC=pandawms/CN=Root Mapped" root
"/DC=org/DC=pandawms/CN=Ghost" nosuchaccount9
"/DC=org/DC=pandawms/CN=Pool User" .atlas
/DC=org/DC=pandawms/CN=Unquoted\tpandapilot
"{JANE}" pandapilot
"""


def test_grid_mapfile_is_parsed_the_classic_way():
    mapping = glexec.parse_user_map(MAP + '"unterminated pandauser1\n"/CN=No Account"\n')
    assert mapping[JANE] == "pandauser1", "first account of the first line of a DN"
    assert mapping["/DC=org/DC=pandawms/CN=Unquoted"] == "pandapilot"
    assert mapping["/DC=org/DC=pandawms/CN=Pool User"] == ".atlas"
    assert "/CN=No Account" not in mapping and len(mapping) == 5
    assert glexec.parse_user_map(f'"{JANE}/CN=proxy/CN=123" pandauser1')[JANE] == "pandauser1"


def test_queue_without_glexec_never_switches():
    assert glexec.target(JANE, {"queuedata": {"nickname": "Q"}, "user_map": ""}) is None
    assert glexec.target(JANE, {"queuedata": {"nickname": "Q", "glexec": "FALSE"}}) is None
    assert glexec.wanted({"glexec": True}) and glexec.wanted({"glexec": "TRUE"})


@pytest.fixture
def mapfile() -> Iterator[Path]:
    unprivileged.require_root()
    for name in ("pandauser1", "pandapilot"):
        unprivileged.ensure_user(name)
    base = Path(tempfile.mkdtemp(prefix="pandaglexec-", dir="/tmp"))
    base.chmod(0o755)
    try:
        (base / "grid-mapfile").write_text(MAP)
        yield base / "grid-mapfile"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _diag(owner: str, user_map: str) -> str:
    with pytest.raises(PilotFailure) as info:
        glexec.account_for(owner, queue="GLEXEC_Q", user_map=user_map)
    assert info.value.code == 1391
    return info.value.diag


def test_every_way_a_mapping_can_fail_is_1391(mapfile):
    assert "no --user-map" in _diag(JANE, "")
    assert "cannot read the user map" in _diag(JANE, str(mapfile) + ".missing")
    assert "no prodUserID" in _diag("NULL", str(mapfile))
    assert "/CN=Nobody is not mapped" in _diag("/DC=org/CN=Nobody/CN=12345", str(mapfile))
    assert "no account on this node" in _diag("/DC=org/DC=pandawms/CN=Ghost", str(mapfile))
    assert "never runs as root" in _diag("/DC=org/DC=pandawms/CN=Root Mapped", str(mapfile))
    assert "pool-account" in _diag("/DC=org/DC=pandawms/CN=Pool User", str(mapfile))


def test_a_proxy_dn_maps_to_its_owners_account(mapfile):
    account = glexec.account_for(f"{JANE}/CN=1234567/CN=proxy", queue="Q", user_map=str(mapfile))
    pw = unprivileged.ensure_user("pandauser1")
    assert (account.name, account.uid, account.gid) == ("pandauser1", pw.pw_uid, pw.pw_gid)
    assert pw.pw_gid not in account.groups and 0 not in account.groups


def test_a_non_root_pilot_refuses_a_glexec_queue(mapfile):
    pw = unprivileged.ensure_user(unprivileged.PILOT_USER)
    code = ("from pilot import glexec\nfrom pilot.errors import PilotFailure\n"
            f"print(glexec.target({JANE!r}, {{'queuedata': {{'nickname': 'Q'}}, 'user_map': {str(mapfile)!r}}}))\ntry:\n"
            f"    glexec.target({JANE!r}, {{'queuedata': {{'nickname': 'Q', 'glexec': True}}, 'user_map': {str(mapfile)!r}}})\n"
            "except PilotFailure as e:\n    print(e.code, e.diag)\n")  # fmt: skip
    r = subprocess.run([unprivileged.PYTHON, "-c", code], env={"PYTHONPATH": str(unprivileged.ROOT)}, cwd="/",
                       capture_output=True, text=True, timeout=60, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])  # fmt: skip
    lines = r.stdout.splitlines()
    assert lines[0] == "None", "a non-root pilot given a map still runs payloads as itself on a plain queue"
    assert lines[1].startswith("1391 ") and "not root" in lines[1], r.stderr


@pytest.mark.parametrize("flag", [None, False, "FALSE", "0"])
def test_a_root_pilot_with_a_user_map_switches_whatever_the_queue_says(mapfile, flag):
    """The local option wins: unsigned queuedata may turn switching on, never off."""
    queuedata = {"nickname": "Q"} if flag is None else {"nickname": "Q", "glexec": flag}
    account = glexec.target(JANE, {"queuedata": queuedata, "user_map": str(mapfile)})
    assert account is not None and account.name == "pandauser1"
    assert glexec.target(JANE, {"queuedata": queuedata, "user_map": ""}) is None


def test_a_root_pilot_without_a_user_map_says_payloads_run_as_root(caplog):
    unprivileged.require_root()
    with caplog.at_level(logging.WARNING, logger="pilot"):
        cli._warn_about_queue(config.parse(["-q", "Q"], {}), {"nickname": "Q"})
    assert caplog.text.count("the pilot runs as root without --user-map: payloads will run as root;") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pilot"):
        cli._warn_about_queue(config.parse(["-q", "Q"], {}), {"nickname": "Q", "glexec": "TRUE"})
        assert "payloads will run as root (this queue has glexec: its jobs fail with 1391)" in caplog.text
        caplog.clear()
        cli._warn_about_queue(
            config.parse(["-q", "Q", "--user-map", "/etc/grid-mapfile"], {}), {"nickname": "Q"}
        )
    assert caplog.text == ""


@pytest.fixture
def jobdir(mapfile) -> Iterator[tuple[Path, glexec.Account]]:
    account = glexec.account_for(JANE, queue="Q", user_map=str(mapfile))
    d = mapfile.parent / "home" / "PanDA_Pilot-7"
    d.mkdir(parents=True)
    d.parent.chmod(0o711)
    yield d, account


def test_the_job_dir_opens_to_the_payload_only_while_it_runs(jobdir):
    d, account = jobdir
    (d / "in.dat").write_bytes(b"input")
    (d / "in.dat").chmod(0o600)
    workdir.write_json(d / workdir.JOB_FILE, {"PandaID": 7})
    glexec.prepare(d, account)
    st = d.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, account.gid, 0o750)
    glexec.open_to_payload(d, ["in.dat"], ["payload.stdout"])
    assert stat.S_IMODE(d.stat().st_mode) == 0o1770
    assert stat.S_IMODE((d / "in.dat").stat().st_mode) == 0o644 and (d / "payload.stdout").stat().st_uid == 0
    assert stat.S_IMODE((d / workdir.JOB_FILE).stat().st_mode) == 0o600
    glexec.close_to_payload(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o750
    glexec.open_to_payload(d, [], [])
    glexec.lock_down(d)  # a wrapper that finds the dir left open closes it
    assert stat.S_IMODE(d.stat().st_mode) == 0o750


def test_a_job_dir_the_account_cannot_reach_is_1391(jobdir):
    d, account = jobdir
    d.parent.chmod(0o700)
    with pytest.raises(PilotFailure, match="cannot reach the job dir") as info:
        glexec.prepare(d, account)
    assert info.value.code == 1391


def test_payload_runs_as_the_account_and_is_killed_as_such(jobdir):
    d, account = jobdir
    glexec.prepare(d, account)
    glexec.open_to_payload(d, [], ["payload.stdout", "payload.stderr"])
    started: list[int] = []
    result = run_payload("id -u; id -g; id -G; umask; touch made; stat -c %U:%a made; (sleep 300 &); sleep 300",
                         cwd=d, env={"PATH": "/usr/bin:/bin"}, stdout_path=d / "payload.stdout",
                         stderr_path=d / "payload.stderr", walltime=2, poll=0.1, grace=0.5, account=account,
                         on_start=started.append)  # fmt: skip
    left = unprivileged.session_members(account.uid, started[0])
    for pid in left:  # only if the kill failed: this test's own payload, by pid
        os.kill(pid, 9)
    lines = (d / "payload.stdout").read_text().splitlines()
    groups = " ".join(map(str, (account.gid, *account.groups)))
    assert lines == [str(account.uid), str(account.gid), groups, "0022", f"{account.name}:644"], lines
    assert result.killed is not None and result.killed[0] == 1213, result
    assert left == [], "the payload and its background child, both of the account, are gone"


def test_outputs_must_be_regular_files_of_the_payloads_account(jobdir):
    d, account = jobdir
    job = parse({"PandaID": "7", "transformation": "/bin/true", "outFiles": "a.out,b.out,c.out",
                 "realDatasets": "x,x,x", "scopeOut": "s,s,s"})  # fmt: skip
    (d / "a.out").write_text("fine")
    os.chown(d / "a.out", account.uid, account.gid)
    (d / "b.out").symlink_to("/proc/self/fd/3")  # what a payload would do to ship the wrapper's proxy
    (d / "c.out").write_text("root's")
    out = Outcome()
    _check_outputs(job, d, out, account)
    assert out.code == 1165 and "b.out is not a regular file" in out.diag
    (d / "b.out").unlink()
    (d / "b.out").write_text("")
    os.chown(d / "b.out", account.uid, account.gid)
    out = Outcome()
    _check_outputs(job, d, out, account)
    assert out.code == 1165 and "c.out belongs to uid 0" in out.diag
    (d / "link.out").symlink_to(d / "a.out")
    job2 = parse({"PandaID": "7", "transformation": "/bin/true", "outFiles": "link.out", "realDatasets": "x",
                  "scopeOut": "s"})  # fmt: skip
    with pytest.raises(PilotFailure, match="symbolic link") as info:
        transfers.stage_out(job2, d, {"queuedata": {}, "ddmconf": {}}, list(job2.outputs), {}, lambda: False,
                            lambda *_: None)  # fmt: skip
    assert info.value.code == 1165


def _packed(d: Path, **kw) -> tuple[set[str], bytes]:
    with tarfile.open(workdir.make_log_tarball(d, "log.tgz", "Q", 7, exclude=set(), **kw)) as tar:
        names = {m.name.removeprefix("tarball_PandaJob_7_Q/") for m in tar.getmembers()}
        return names, b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())


def test_log_tarball_packs_no_hard_link_and_under_switching_only_the_accounts_files(jobdir):
    """A root wrapper packs the log: a hard link the account made to a root file (fs.protected_hardlinks=0)
    must not ship that file; neither must a root file the pilot did not make."""
    d, account = jobdir
    key = b"-----BEGIN PRIVATE KEY-----"
    pilot_log, proxy = d.parent / "pilotlog.txt", d.parent / "x509up"
    for secret in (pilot_log, proxy):
        secret.write_bytes(key)
        secret.chmod(0o600)
    os.link(pilot_log, d / "linked.txt")  # both names remain: two links
    os.link(proxy, d / "orphaned-link.txt")
    proxy.unlink()  # the original name gone (--remove-proxy): one link left, still root's
    # root's, as the wrapper makes them
    for name in ("payload.stdout", "wrapper.log", "trf.sh", "root-made.txt"):
        (d / name).write_text(name)
    workdir.update_state(d, phase="stageout")
    (d / "sub").mkdir()
    (d / "sub" / "wrapper.log").write_text("root's, not the pilot's")
    for name in ("mine.txt", "sub/mine.txt", "mine-twice.txt"):
        (d / name).write_text("the account's")
        os.chown(d / name, account.uid, account.gid)
    os.link(d / "mine-twice.txt", d / "sub" / "again.txt")
    names, data = _packed(d, payload_uid=account.uid, pilot_files={"trf.sh"})
    assert names == {"mine.txt", "sub/mine.txt", "payload.stdout", "wrapper.log", "trf.sh", "jobState-7.json"}
    assert key not in data
    names, data = _packed(d)  # no identity switching: the payload is the pilot's uid (or root) anyway
    assert "linked.txt" not in names and "mine-twice.txt" not in names and "sub/again.txt" not in names
    assert {"orphaned-link.txt", "root-made.txt", "sub/wrapper.log", "mine.txt"} <= names


def test_pilot_files_never_follow_what_the_payload_planted(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "state.json").symlink_to(victim)
    workdir.write_json(tmp_path / "state.json", {"a": 1})  # replaces the link, never writes through it
    assert victim.read_text() == "untouched" and not (tmp_path / "state.json").is_symlink()
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600
    assert workdir.read_json(tmp_path / "state.json") == {"a": 1}
    (tmp_path / "link.json").symlink_to(tmp_path / "state.json")
    os.mkfifo(tmp_path / "KILL_REQUEST")  # would block a plain open() for ever
    assert workdir.read_json(tmp_path / "link.json") is None
    assert workdir.read_json(tmp_path / "KILL_REQUEST") is None
    assert workdir.kill_request(tmp_path) == (1363, "kill requested through an unreadable KILL_REQUEST file")


def test_log_tarball_packs_no_file_from_outside_the_job_dir(tmp_path):
    secret = tmp_path / "outside"
    (secret / "sub").mkdir(parents=True)
    (secret / "x509up").write_text("-----BEGIN PRIVATE KEY-----")
    (secret / "sub" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----")
    d = tmp_path / "PanDA_Pilot-9"
    (d / "logs").mkdir(parents=True)
    (d / "payload.stdout").write_text("out")
    (d / "logs" / "step.log").write_text("step")
    (d / "proxy").symlink_to(secret / "x509up")
    (d / "self").symlink_to("/proc/self/fd/3")
    (d / "dir").symlink_to(secret)
    (d / "logs" / "deeper").symlink_to(secret / "sub")
    os.mkfifo(d / "fifo")
    (d / workdir.LOCK_FILE).write_text("1")
    tarball = workdir.make_log_tarball(d, "log.tgz", "Q", 9, exclude=set())
    with tarfile.open(tarball) as tar:
        names = sorted(tar.getnames())
        data = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert names == ["tarball_PandaJob_9_Q/logs/step.log", "tarball_PandaJob_9_Q/payload.stdout"]
    assert b"PRIVATE" not in data and stat.S_IMODE(tarball.stat().st_mode) == 0o644
