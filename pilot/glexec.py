"""Identity switching: the payload runs as the local account its owner maps to (gLExec's role).

Classic multi-user pilots ran each user's payload through gLExec, under the local account the
site mapped the user's DN to, so that the payload could not touch the pilot's proxy nor another
user's job (schedconfig column `glexec`). Here it is optional and off by default. A root pilot
given --user-map always switches: the local option wins, whatever the queue says (queuedata is
server-supplied and unsigned, so `glexec` can only turn switching on, never off). The queue's
`glexec` asks for switching too. Switching means the job's `prodUserID` (its bare DN: proxy CNs
stripped) is looked up in the grid-mapfile given with --user-map, and the payload runs with that
account's uid, primary gid and own groups, umask 022. A root pilot without --user-map on a queue
without `glexec` runs payloads as root (it warns at start-up); a non-root pilot runs them as itself.

The job dir stays the pilot's: owner root, group the account's primary group, mode 0750 during
stage-in and stage-out (the account can read its inputs but cannot change the dir) and 1770
(sticky) only while the payload runs, so that it can create its outputs but can neither delete
nor replace the pilot's files, which are root's with mode 0600 (job.json, jobState-*, LOCKFILE,
KILL_REQUEST). Any failure — no map, an unmapped DN, an unknown or privileged account, a non-root
pilot on a glexec queue, a job dir the account cannot reach — fails the job with 1391 before the
payload starts: a payload is never run under the pilot's identity on a queue that asks for
switching.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from panda_server.protocol.identity import bare_dn
from pilot import infosys
from pilot.errors import PilotFailure

log = logging.getLogger("pilot.glexec")
IDENTITY_SWITCH = 1391
PAYLOAD_UMASK = 0o022
OPEN_MODE = 0o1770  # while the payload runs: it may add files, not remove the pilot's
CLOSED_MODE = 0o750  # before and after: it may read, not change


@dataclasses.dataclass(frozen=True)
class Account:
    """The local account a payload runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, the primary one excluded


def parse_user_map(text: str) -> dict[str, str]:
    """{bare DN: account} from grid-mapfile text: `"<DN>" account[,more]` per line, # comments.

    The first account of a line is used; the first line of a DN wins (as the Globus gridmap).
    """
    mapping: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith('"'):
            end = line.find('"', 1)
            dn, rest = (line[1:end], line[end + 1 :]) if end > 0 else ("", "")
        else:
            dn, rest = (line.split(None, 1) + [""])[:2]
        account = rest.strip().split(",")[0].strip()
        if dn.strip() and account:
            mapping.setdefault(bare_dn(dn.strip()), account)
    return mapping


def wanted(queuedata: Mapping[str, Any], user_map: str = "") -> bool:
    """Switch identities? Always for a root pilot with a user map; else when the queue asks (`glexec`)."""
    return (bool(user_map) and os.geteuid() == 0) or infosys.truthy(queuedata.get("glexec", False))


def _fail(diag: str) -> PilotFailure:
    return PilotFailure(IDENTITY_SWITCH, diag)


def account_for(owner: str, *, queue: str, user_map: str) -> Account:
    """The account the job's owner (prodUserID) maps to; PilotFailure 1391 when there is none."""
    if os.geteuid() != 0:
        raise _fail(f"queue {queue} runs payloads under their owner's account (glexec) but the pilot runs as "
                    f"uid {os.geteuid()}, not root: the payload was not started")  # fmt: skip
    if not user_map:
        raise _fail(f"queue {queue} runs payloads under their owner's account (glexec) but the pilot has no "
                    "--user-map (PILOT_USER_MAP): the payload was not started")  # fmt: skip
    try:
        mapping = parse_user_map(Path(user_map).read_text(encoding="utf-8", errors="replace"))
    except OSError as exc:
        raise _fail(f"cannot read the user map {user_map}: {exc.strerror}") from None
    dn = bare_dn(owner.strip())
    if not dn or dn in ("NULL", "None"):
        raise _fail("the job has no prodUserID to map to a local account: the payload was not started")
    name = mapping.get(dn)
    if name is None:
        raise _fail(f"{dn} is not mapped to a local account in {user_map}: the payload was not started")
    if name.startswith("."):
        raise _fail(f"{dn} maps to the pool-account pattern {name}; only plain accounts are supported")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise _fail(
            f"{dn} maps to {name}, which is no account on this node: the payload was not started"
        ) from None
    groups = tuple(g for g in os.getgrouplist(name, pw.pw_gid) if g != pw.pw_gid)
    if 0 in (pw.pw_uid, pw.pw_gid, *groups):
        raise _fail(f"{dn} maps to {name} (uid {pw.pw_uid}, gid {pw.pw_gid}, groups {list(groups)}): a payload "
                    "never runs as root or with the root group")  # fmt: skip
    return Account(name, pw.pw_uid, pw.pw_gid, groups)


def target(owner: str, cfg: Mapping[str, Any]) -> Account | None:
    """None when nothing asks for switching (see wanted); else the payload's account (or PilotFailure 1391)."""
    qd, user_map = cfg["queuedata"], str(cfg.get("user_map") or "")
    if not wanted(qd, user_map):
        return None
    return account_for(owner, queue=str(qd.get("nickname", "")), user_map=user_map)


def _can_search(st: os.stat_result, account: Account) -> bool:
    if st.st_uid == account.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in (account.gid, *account.groups):
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def prepare(jobdir: Path, account: Account) -> None:
    """Give the account's group read access to the job dir; check it can reach it at all."""
    for parent in jobdir.resolve().parents:
        st = os.stat(parent)
        if not _can_search(st, account):
            raise _fail(f"the account {account.name} cannot reach the job dir: {parent} (mode {stat.filemode(st.st_mode)}, "
                        f"uid {st.st_uid}) is closed to it; use a work dir (-a) whose parents others may enter (o+x)")  # fmt: skip
    os.chown(jobdir, 0, account.gid)
    os.chmod(jobdir, CLOSED_MODE)


def open_to_payload(jobdir: Path, inputs: Iterable[str], outputs_of_pilot: Iterable[str]) -> None:
    """Right before the payload: its inputs readable, the files the pilot writes for it made, dir writable.

    `outputs_of_pilot` (payload.stdout/stderr) are created here as root's own, so the payload
    (which writes them through its inherited descriptors) cannot swap them for links.
    """
    for name in outputs_of_pilot:
        os.close(os.open(jobdir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644))
    for lfn in inputs:
        try:
            st = os.lstat(jobdir / lfn)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):  # symlinked inputs (mv tool) point at the storage: left alone
            os.chmod(jobdir / lfn, stat.S_IMODE(st.st_mode) | 0o444)
    os.chmod(jobdir, OPEN_MODE)


def close_to_payload(jobdir: Path) -> None:
    """After the payload: the dir is frozen for the account (stage-out reads names that stay put)."""
    os.chmod(jobdir, CLOSED_MODE)


def lock_down(jobdir: Path) -> None:
    """A root wrapper starting on a dir left open (a wrapper died mid-payload) closes it first."""
    try:
        st = os.lstat(jobdir)
    except OSError:
        return
    if os.geteuid() == 0 and stat.S_ISDIR(st.st_mode) and st.st_mode & 0o1022:
        os.chmod(jobdir, stat.S_IMODE(st.st_mode) & 0o755)
