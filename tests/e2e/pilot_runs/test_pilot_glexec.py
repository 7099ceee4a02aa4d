"""Identity switching (gLExec's role): a root pilot given --user-map (on any queue) or on a `glexec`
queue runs the payload as the local account its owner's DN maps to in --user-map; whatever cannot
be switched fails with 1391 and never runs under the pilot's identity.

The accounts pandauser1 and pandauser2 are created with useradd when missing. The pilot runs as
root (these tests need root) except where a non-root pilot is the point.
"""

from __future__ import annotations

import json
import os
import pwd
import signal

import pytest

from panda_server.pki import DEFAULT_USER_DN
from pilot.infosys import rucio_path
from tests.support import pilots, unprivileged

GLEXEC_QUEUE, PLAIN_QUEUE = "GLEXEC_T2", "NOGLEXEC_T2"
JANE = "/DC=org/DC=pandawms/CN=Jane Glexec"
KIM = DEFAULT_USER_DN  # the test user proxy's DN: killJobs is for the job's owner only


@pytest.fixture
def site(live, engine, pilot_dir):
    """Two queues on one SE (with and without glexec), a user map, a world-writable marker dir."""
    unprivileged.require_root()
    accounts = {name: unprivileged.ensure_user(name) for name in ("pandauser1", "pandauser2")}
    se = pilot_dir / "se"
    se.mkdir(exist_ok=True)
    pilots.add_queue(engine, GLEXEC_QUEUE, se_path=str(se), copytool="cp", glexec=True)
    pilots.add_queue(engine, PLAIN_QUEUE, se_path=str(se), ddm=f"{GLEXEC_QUEUE}_DATADISK", copytool="cp")
    user_map = pilot_dir / "grid-mapfile"
    user_map.write_text(f'# test accounts\n\n"{JANE}" pandauser1\n"{KIM}" pandauser2,pandauser1\n')
    shared = pilot_dir / "shared"
    shared.mkdir(mode=0o1777, exist_ok=True)
    shared.chmod(0o1777)
    return {"se": se, "map": user_map, "shared": shared, "accounts": accounts, "work": pilot_dir / "work"}


def stored(site, lfn: str) -> str:
    return (site["se"] / rucio_path("test", lfn)).read_text()


def test_payload_runs_as_the_mapped_account_and_cannot_touch_the_pilots_files(live, engine, site):
    proxy = live.pki.pilot_proxy
    script = (
        'id -u > who.out; id -g >> who.out; id -G >> who.out; umask >> who.out; stat -c "%a %U %G" . >> who.out; '
        "echo data > mine.txt; stat -c %a mine.txt >> who.out; "
        f'for f in jobState-$PANDAID.json job.json LOCKFILE ../wrapper-$PANDAID.json ../pilotlog.txt {proxy} '
        "/proc/$PPID/environ /proc/$PPID/fd/0; do "
        'if cat "$f" > /dev/null 2>&1; then echo "read $f"; else echo "denied $f"; fi; done > probe.out; '
        'rm -f LOCKFILE 2> /dev/null; test -e LOCKFILE && echo "LOCKFILE kept" >> probe.out; '
        'mv jobState-$PANDAID.json stolen 2> /dev/null; test -e jobState-$PANDAID.json && echo "state kept" >> probe.out; '
        'ls .. > /dev/null 2>&1 || echo "home not listable" >> probe.out'
    )  # fmt: skip
    job = pilots.shell_job(
        GLEXEC_QUEUE, script, outputs=["who.out", "probe.out"], prodUserID=f"{JANE}/CN=1234567"
    )
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, GLEXEC_QUEUE, site["work"], "--user-map", str(site["map"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"PandaID={pid} finished" in proc.stdout
    account = site["accounts"]["pandauser1"]
    who = stored(site, "who.out").split("\n")
    assert who[0:3] == [str(account.pw_uid), str(account.pw_gid), str(account.pw_gid)], who
    assert who[3] == "0022" and who[4] == "1770 root pandauser1" and who[5] == "644", who
    probe = stored(site, "probe.out").splitlines()
    assert [line for line in probe if line.startswith("read ")] == [], probe
    assert len([line for line in probe if line.startswith("denied ")]) == 8
    assert {"LOCKFILE kept", "state kept", "home not listable"} <= set(probe), probe
    assert f"the payload will run as pandauser1 (uid {account.pw_uid}" in proc.stderr


def test_unmapped_dn_fails_with_1391_and_nothing_runs(live, engine, site):
    marker = site["shared"] / "ran"
    job = pilots.shell_job(GLEXEC_QUEUE, f"touch {marker}", prodUserID="/DC=org/DC=pandawms/CN=Nobody Mapped")
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, GLEXEC_QUEUE, site["work"], "--user-map", str(site["map"]))
    assert proc.returncode == 1, proc.stderr[-3000:]
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1391, row["pilotErrorDiag"]
    assert "/CN=Nobody Mapped is not mapped to a local account" in row["pilotErrorDiag"]
    assert not marker.exists(), "the payload never started"
    pilots.run_adder(engine)
    log_row = next(f for f in pilots.file_rows(engine, pid).values() if f["type"] == "log")
    assert log_row["status"] == "ready", "the failed job's log is still stored"


def test_non_root_pilot_on_a_glexec_queue_fails_the_job_with_1391(live, engine, site):
    unprivileged.hand_over(site["se"], unprivileged.PILOT_USER)
    secret = unprivileged.private_copy(
        live.pki.pilot_proxy, site["work"].parent / "secret", unprivileged.PILOT_USER
    )
    marker = site["shared"] / "ran"
    job = pilots.shell_job(GLEXEC_QUEUE, f"touch {marker}", prodUserID=JANE)
    pid = pilots.insert_activated(engine, job)
    proc = unprivileged.run_pilot_as(unprivileged.PILOT_USER, live, GLEXEC_QUEUE, site["work"], "--user-map",
                                     str(site["map"]), proxy=secret)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1391 and "not root" in row["pilotErrorDiag"], row["pilotErrorDiag"]
    assert not marker.exists()


def test_a_root_pilot_with_a_user_map_switches_on_a_queue_without_glexec(live, engine, site):
    """The local option wins: queuedata (unsigned) can turn switching on, never off."""
    job = pilots.shell_job(PLAIN_QUEUE, "id -u > who.out", outputs=["who.out"], prodUserID=JANE)
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, PLAIN_QUEUE, site["work"], "--user-map", str(site["map"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pilots.job_row(engine, pid)["pilotErrorCode"] == 0
    assert stored(site, "who.out").strip() == str(site["accounts"]["pandauser1"].pw_uid)
    assert "payloads will run as root" not in proc.stderr


def test_a_root_pilot_without_a_user_map_runs_payloads_as_root_and_says_so(live, engine, site):
    job = pilots.shell_job(PLAIN_QUEUE, "id -u > who.out", outputs=["who.out"], prodUserID=JANE)
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, PLAIN_QUEUE, site["work"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pilots.job_row(engine, pid)["pilotErrorCode"] == 0
    assert stored(site, "who.out").strip() == "0"
    assert proc.stderr.count("the pilot runs as root without --user-map: payloads will run as root") == 1


def test_kill_reaches_a_payload_running_as_another_account(live, engine, site):
    uid = site["accounts"]["pandauser2"].pw_uid
    pidfile = site["shared"] / "payload.pid"
    job = pilots.shell_job(GLEXEC_QUEUE, f"(sleep 300 &); echo $$ > {pidfile}; sleep 300", prodUserID=KIM)
    pid = pilots.insert_activated(engine, job)
    proc = pilots.start_pilot(live, GLEXEC_QUEUE, site["work"], "--user-map", str(site["map"]), "--heartbeat", "2",
                              "--kill-grace", "2", log=site["work"].parent / "kill.log")  # fmt: skip
    payload_pid = 0
    try:
        payload_pid = int(
            pilots.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 60, "payload")
        )
        assert os.stat(f"/proc/{payload_pid}").st_uid == uid == pwd.getpwnam("pandauser2").pw_uid
        assert len(unprivileged.session_members(uid, payload_pid)) == 2, (
            "the payload and its background sleep"
        )
        user = live.session(live.pki.user_proxy)
        r = user.post(f"{live.https_url}/server/panda/killJobs", data={"ids": json.dumps([pid])}, timeout=30)
        assert r.json() == [True]
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        left = unprivileged.session_members(uid, payload_pid) if payload_pid else []
        for p in left:  # only if the pilot failed to: this test's own payload, by pid
            os.kill(p, signal.SIGKILL)
    assert left == [], "no process of the payload is left"
    pilots.run_adder(engine)
    row = pilots.job_row(engine, pid)
    assert (row["jobStatus"], row["pilotErrorCode"]) == ("failed", 1144), row["pilotErrorDiag"]
    assert "killing payload pid" in (site["work"].parent / "kill.log").read_text()
