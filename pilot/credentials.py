"""The pilot's credentials, kept from the payload: in memory, in processes the payload cannot read.

Classic pilots hid the proxy from user payloads (gLExec, or at least no X509_USER_PROXY in the
payload's environment). Here, when the proxy is concealed (`--conceal-proxy`, the default):

* the pilot marks itself non-dumpable (prctl PR_SET_DUMPABLE 0) before it reads the proxy, so a
  process of the same uid can read neither /proc/<pilot>/{environ,mem,fd/*} nor ptrace it;
* it copies the proxy into an anonymous memory file (memfd, close-on-exec, sealed) and uses
  /proc/self/fd/<n> as the certificate path; `--remove-proxy` then deletes the file;
* a job wrapper gets the memfd only after it has made itself non-dumpable too (dumpable is reset
  by execve): it connects to a one-off abstract Unix socket of the pilot, which checks through
  SO_PEERCRED that the peer is the wrapper it started, that nobody traces it and that its /proc
  entries are no longer ours, and only then passes the descriptor (SCM_RIGHTS). Passing the fd at
  exec time instead would leave a window in which a same-uid process attaches to the new wrapper;
* the payload never inherits the descriptor (close-on-exec, close_fds) and its environment
  never holds a variable of DENIED_ENV; nor does the queue's (unsigned) `environ` set one of
  DENIED_QUEUE_ENV, which would let a schedconfig change run code in the payload's place.

Without memfd or prctl (not Linux) the pilot warns and falls back to the file.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pilot.errors import PilotFailure

log = logging.getLogger("pilot.credentials")

# Never in the payload's environment (nor in the job wrapper's): credentials, or where they are
DENIED_ENV = frozenset({"X509_USER_PROXY", "X509_USER_CERT", "X509_USER_KEY", "BEARER_TOKEN",
                        "BEARER_TOKEN_FILE"})  # fmt: skip
DENIED_ENV_PREFIXES = ("PANDA_AUTH_",)
# Never from the queue's `environ` either (queuedata is not signed: whoever can change schedconfig
# must not make bash, the dynamic linker or an interpreter run code of their choosing, nor move
# what PATH finds); the pilot's own PATH, HOME and TMPDIR stand
DENIED_QUEUE_ENV = frozenset({"PATH", "HOME", "TMPDIR", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4",
                              "PROMPT_COMMAND", "IFS", "CDPATH", "GLOBIGNORE", "GCONV_PATH", "LOCPATH",
                              "NLSPATH", "HOSTALIASES", "PERL5LIB", "PERLLIB", "PERL5OPT", "RUBYLIB",
                              "RUBYOPT", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"})  # fmt: skip
DENIED_QUEUE_ENV_PREFIXES = ("LD_", "PYTHON", "BASH_FUNC_", "GLIBC_TUNABLES")
_PR_SET_DUMPABLE, _PR_GET_DUMPABLE = 4, 3
HANDOVER_TIMEOUT = 60.0  # s a new job wrapper has to come for its credential
_MAX_STRANGERS = 20  # connections from other processes tolerated during one handover
_FD_PREFIX = "/proc/self/fd/"


def is_credential_variable(name: str) -> bool:
    return name in DENIED_ENV or name.startswith(DENIED_ENV_PREFIXES)


def without_credentials(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` with every credential variable removed."""
    return {k: v for k, v in env.items() if not is_credential_variable(k)}


def queue_environ(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The queue's `environ` without the names it may not set (credentials, DENIED_QUEUE_ENV), and those names."""
    refused = sorted(k for k in env if is_credential_variable(k) or k in DENIED_QUEUE_ENV
                     or k.startswith(DENIED_QUEUE_ENV_PREFIXES))  # fmt: skip
    return {k: v for k, v in env.items() if k not in refused}, refused


def scrub_environ() -> list[str]:
    """Remove credential variables from this process's environment (children inherit it)."""
    names = [k for k in os.environ if is_credential_variable(k)]
    for name in names:
        del os.environ[name]
    return names


def _prctl(option: int, value: int = 0) -> int | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0))
    except (OSError, AttributeError):  # no libc prctl: not Linux
        return None


def set_non_dumpable() -> bool:
    """Make this process non-dumpable: same-uid processes lose /proc/<pid> access and ptrace."""
    return _prctl(_PR_SET_DUMPABLE, 0) == 0 and _prctl(_PR_GET_DUMPABLE) == 0


@dataclasses.dataclass(frozen=True)
class Credential:
    """Where this process finds its proxy: `path` for TLS and copy tools; `fd` when in memory."""

    path: str | None = None
    fd: int | None = None

    @property
    def concealed(self) -> bool:
        return self.fd is not None


def fd_of(path: str | None) -> int | None:
    """The descriptor number of a /proc/self/fd/<n> path (a child needs it passed on), else None."""
    if path and path.startswith(_FD_PREFIX) and path[len(_FD_PREFIX) :].isdigit():
        return int(path[len(_FD_PREFIX) :])
    return None


def load(proxy: str | None, *, conceal: bool, remove: bool) -> Credential:
    """The pilot's credential: the proxy file, or (concealed) a sealed memfd holding its bytes."""
    if not proxy:
        return Credential()
    if not conceal:
        return Credential(path=proxy)
    if not hasattr(os, "memfd_create") or not set_non_dumpable():
        log.warning("cannot conceal the proxy on this system (no memfd or prctl): a payload running as "
                    "the pilot's user may read the proxy file")  # fmt: skip
        return Credential(path=proxy)
    try:
        with open(proxy, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise PilotFailure(
            1163, f"cannot read the proxy given with --proxy/X509_USER_PROXY: {exc.strerror}"
        ) from None
    fd = os.memfd_create("pilot-proxy", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.fchmod(fd, 0o600)  # XRootD's GSI refuses a key readable by others
    os.write(fd, data)
    fcntl.fcntl(
        fd,
        fcntl.F_ADD_SEALS,
        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
    )
    if remove:
        try:
            os.unlink(proxy)
        except OSError as exc:
            log.warning("--remove-proxy: cannot remove the proxy file: %s", exc.strerror)
        else:
            log.info("proxy loaded into memory and its file removed (--remove-proxy)")
    return Credential(path=f"{_FD_PREFIX}{fd}", fd=fd)


def code_is_writable() -> bool:
    """Can this process write the pilot's own code? A same-uid payload could then alter the next wrapper."""
    top = Path(__file__).resolve().parent
    return any(os.access(p, os.W_OK) for p in (top, top / "wrapper", top / "__pycache__") if p.exists())


class Handover:
    """The pilot's side: one abstract Unix socket per wrapper, the memfd for the right peer only."""

    def __init__(self, credential: Credential) -> None:
        self.credential = credential
        self.name = f"pandapilot-{os.getpid()}-{secrets.token_hex(8)}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind("\0" + self.name)
        self.listener.listen(4)

    def give(self, pid: int, alive: Callable[[], bool], timeout: float = HANDOVER_TIMEOUT) -> bool:
        """Wait for wrapper `pid` to connect and pass it the credential; False if it never could."""
        deadline, strangers = time.monotonic() + timeout, 0
        while time.monotonic() < deadline and strangers < _MAX_STRANGERS and alive():  # bounded by both
            self.listener.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
            try:
                conn, _addr = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                peer_pid, peer_uid, _gid = struct.unpack("3i", conn.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))  # fmt: skip
                if peer_pid != pid or peer_uid != os.getuid():
                    strangers += 1
                    log.warning(
                        "credential socket: refused a connection from pid %d uid %d", peer_pid, peer_uid
                    )
                    continue
                problem = _unsafe(pid)
                if problem:
                    log.error("not handing the proxy to job wrapper %d: %s", pid, problem)
                    return False
                socket.send_fds(conn, [b"proxy"], [self.credential.fd])
                return True
        log.error("job wrapper %d did not come for its credential", pid)
        return False

    def close(self) -> None:
        self.listener.close()


def _unsafe(pid: int) -> str:
    """Why process `pid` must not get the credential ("" when it may)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            tracer = next((line.split()[1] for line in fh if line.startswith("TracerPid:")), "0")
        owner = os.stat(f"/proc/{pid}/fd").st_uid
    except (OSError, IndexError):
        return "its /proc entry cannot be read"
    if tracer != "0":
        return f"it is being traced by pid {tracer}"
    if os.getuid() != 0 and owner == os.getuid():
        return "it is still dumpable (readable by any process of our uid)"
    return ""


def receive(name: str, timeout: float = HANDOVER_TIMEOUT) -> Credential:
    """The job wrapper's side: fetch the memfd from the pilot (call set_non_dumpable() first)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect("\0" + name)
        _msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1, socket.MSG_CMSG_CLOEXEC)
    if not fds:
        raise OSError("the pilot refused to hand over its credential")
    return Credential(path=f"{_FD_PREFIX}{fds[0]}", fd=fds[0])
