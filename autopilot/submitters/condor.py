"""HTCondor: a batch of pilots as one cluster, through condor_submit, condor_q/condor_history, condor_rm.

The classic factory's Condor-G submission (client-monitor-bamboo-autopilot.md §4.3, autopyfactory's
CondorBase/CondorGrid/CondorOSGCE plugins) in two forms, chosen by the queue's `jobmanager`:

- "" : `universe = vanilla` into the factory's own pool (request_memory, a periodic_remove);
- "htcondor-ce", "gt2", "arc": `universe = grid` to the CE at `gatekeeper` (grid_resource, the
  batch queue, memory and walltime the way each CE reads them, classic periodic_hold/remove).

One submission is one cluster (`queue <count>`); pilot i is ProcId i, so its per-pilot values use
the `$(Process)` macro and its batch id is `<cluster>.<i>`. The description is written to
`<log_dir>/<name>.jdl` next to the pilots' logs (classic submitMe.jdl). The queue's `jdladd` lines
are added after ours; they may add attributes, never replace one we write nor the pilot's
identity (executable, arguments, environment, proxy, universe, grid_resource, outputs, queue).
docs/autopilot.md, "The condor submitter".
"""

from __future__ import annotations

import json
import logging
import math
import re
import signal
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from autopilot.submitters import commands
from autopilot.submitters.base import BatchCommandError, BatchState, BatchStatus, PilotBatch, SubmitError
from autopilot.submitters.commands import Runner

log = logging.getLogger("panda.autopilot")

GRID_FORMS = ("htcondor-ce", "gt2", "arc")
CE_PORT = 9619  # HTCondor-CE's schedd/collector port: grid_resource = condor <ce> <ce>:9619
HELD_LIMIT = 3600  # s held, then removed (classic periodic_remove)
IDLE_LIMIT = 86400  # s a grid pilot may wait to start (classic: idle and not PENDING > 1 day)
RUN_LIMIT = 7 * 86400  # s running when the queue has no maxtime (classic: > 7 days)
GRID_GRACE = 3600  # s past maxtime: the site's own limit (+maxWallTime) acts first, this is the backstop
CE_DOWN_LIMIT = 1800  # s the CE may be unreachable before its pilots are held (classic GT2: 30 s)
CHUNK = 500  # job ids per condor_q / condor_history / condor_rm command
ATTRIBUTES = ("ClusterId", "ProcId", "JobStatus", "ExitCode", "ExitBySignal", "ExitSignal",
              "HoldReason", "RemoveReason", "RemoteHost", "LastRemoteHost")  # fmt: skip

_ID_RE = re.compile(r"^\d+\.\d+$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_RE = re.compile(r"^\+?[A-Za-z_][A-Za-z0-9_.]*$")
_HOST_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9.\-]*)(?::(\d{1,5}))?$")
_CONTACT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-:/_]*$")
_BATCHQ_RE = re.compile(r"^[A-Za-z0-9_.\-@]+$")
_MACRO_RE = re.compile(r"\$[A-Za-z0-9_]*\(")  # $(x), $ENV(x), $$(x): condor_submit expands these
_SUBMITTED_RE = re.compile(r"^(\d+) job\(s\) submitted to cluster (\d+)\.\s*$", re.M)
_QUEUE_STMT_RE = re.compile(r"^queue(\s|$)", re.I)

# Submit keys with the job attribute they set (condor_submit also takes the attribute's name)
_SAME = {"universe": "jobuniverse", "executable": "cmd", "arguments": "args", "environment": "env",
         "output": "out", "error": "err", "log": "userlog", "grid_resource": "gridresource",
         "globus_rsl": "globusrsl", "notification": "jobnotification", "stream_output": "streamout",
         "stream_error": "streamerr", "should_transfer_files": "shouldtransferfiles",
         "when_to_transfer_output": "whentotransferoutput", "request_memory": "requestmemory",
         "request_cpus": "requestcpus", "periodic_hold": "periodichold", "periodic_remove": "periodicremove",
         "transfer_executable": "transferexecutable", "transferoutput": "transfer_output_files",
         "x509userproxy": "use_x509userproxy"}  # fmt: skip
# The pilot's identity and credentials: never from jdladd, nor as +remote_<name> for the CE side
# what jdladd may not set: the pilot's identity and credentials, and the files that travel (a
# transfer_input_files line could ship the factory host's keys to the CE)
_PROTECTED = ("universe", "executable", "transfer_executable", "arguments", "environment", "getenv",
              "x509userproxy", "grid_resource", "output", "error", "log", "queue", "input",
              "transfer_input_files", "transfer_output_files", "transfer_output_remaps", "initialdir",
              "output_destination", "use_x509userproxy", "scitokens_file")  # fmt: skip


def render(batch: PilotBatch) -> str:
    """The submit description of the whole batch (pure); SubmitError if the queue or batch cannot be
    put into one. Lines: identity, transfer, limits, tracking attributes, jdladd, `queue <count>`."""
    q, where = batch.queue, f"queue {batch.queue.nickname}"
    if q.jobmanager not in ("", *GRID_FORMS):
        raise SubmitError(
            f"{where}: jobmanager {q.jobmanager!r} is not one of '' (vanilla), {', '.join(GRID_FORMS)}"
        )
    _check_batch(batch, where)
    lines = [("universe", "grid" if q.jobmanager else "vanilla"), *_grid_lines(batch, where)]
    lines += [
        ("executable", str(batch.executable)),
        ("arguments", _new_syntax(_word(a) for a in batch.arguments)),
        ("environment", _environment(batch)),
        ("x509userproxy", str(batch.proxy)),
        ("output", str(batch.stdout("$(Process)"))),
        ("error", str(batch.stderr("$(Process)"))),
        ("log", str(batch.log_dir / f"{batch.name}.log")),
        ("notification", "Never"),  # the factory watches every pilot; a mail each would be noise
        ("stream_output", "False"),
        ("stream_error", "False"),
        ("should_transfer_files", "YES" if q.jobmanager else "IF_NEEDED"),
        ("when_to_transfer_output", "ON_EXIT"),
        ("+TransferOutput", '""'),  # only stdout/stderr come back, not the pilot's work dir (APF)
    ]
    lines += _limit_lines(batch)
    lines += [("+MATCH_APF_QUEUE", _classad_string(q.nickname)), ("+APF_QUEUE", _classad_string(q.nickname)),
              ("+APF_LOGURL", _classad_string(batch.log_url)),
              ("+APF_OUTURL", _classad_string(batch.pilot_log_url("$(Process)"))),
              ("+APF_ERRURL", _classad_string(f"{batch.log_url}/{batch.tpid('$(Process)')}.err")),
              ("+PANDA_TPID", _classad_string(batch.tpid("$(Process)")))]  # fmt: skip
    extra = jdladd_lines(batch.queue.jdladd, where, {_normal(k) for k, _ in lines})
    form = f"grid ({q.jobmanager} {q.gatekeeper})" if q.jobmanager else "the local pool (vanilla)"
    out = [f"# AutoPilot batch {batch.name} for queue {q.nickname}: {batch.count} pilot(s) to {form}"]
    out += [f"{key} = {value}" for key, value in lines]
    out += [f"# jdladd of queue {q.nickname}", *extra] if extra else []
    return "\n".join([*out, f"queue {batch.count}"]) + "\n"


def _check_batch(batch: PilotBatch, where: str) -> None:
    if batch.count < 1:
        raise SubmitError(f"{where}: a batch has at least one pilot, not {batch.count}")
    if not _NAME_RE.match(batch.name):
        raise SubmitError(f"{where}: batch name {batch.name!r} is not [A-Za-z0-9_.-]")
    for what, path in (("executable", batch.executable), ("proxy", batch.proxy), ("log_dir", batch.log_dir)):
        if not path.is_absolute():
            raise SubmitError(f"{where}: the {what} {str(path)!r} must be an absolute path")
        _literal(where, what, str(path))
    _literal(where, "log_url", batch.log_url)
    for i, arg in enumerate(batch.arguments):
        _literal(where, f"argument {i + 1}", arg)
    for key, value in batch.environment.items():
        if not _VAR_RE.match(key):
            raise SubmitError(f"{where}: environment variable name {key!r} is not an identifier")
        _literal(where, f"environment variable {key}", value)


def _literal(where: str, what: str, text: str) -> None:
    """`text` goes into the description as it is: one line, no macro condor_submit would expand."""
    if any(c in text for c in "\n\r\0"):
        raise SubmitError(f"{where}: the {what} {text!r} is not one line")
    if _MACRO_RE.search(text):
        raise SubmitError(f"{where}: the {what} {text!r} contains '$(' or '$NAME(', a macro condor_submit "
                          "would expand")  # fmt: skip
    if text.endswith("\\"):
        raise SubmitError(f"{where}: the {what} {text!r} ends with a backslash (a continued line)")


def _grid_lines(batch: PilotBatch, where: str) -> list[tuple[str, str]]:
    q = batch.queue
    if not q.jobmanager:
        return []
    batch_queue = _batch_queue(batch)
    if batch_queue and not _BATCHQ_RE.match(batch_queue):
        raise SubmitError(f"{where}: localqueue {batch_queue!r} is not [A-Za-z0-9_.-@]")
    if q.jobmanager == "htcondor-ce":
        m = _HOST_RE.match(q.gatekeeper)
        if not m:
            raise SubmitError(f"{where}: gatekeeper {q.gatekeeper!r} is not host[:port] of an HTCondor-CE")
        host, port = m.group(1), m.group(2) or CE_PORT
        return [("grid_resource", f"condor {host} {host}:{port}")]
    if not _CONTACT_RE.match(q.gatekeeper):
        raise SubmitError(f"{where}: gatekeeper {q.gatekeeper!r} is not a CE contact (host[:port][/path])")
    if q.jobmanager == "gt2":  # gatekeeper holds the contact, e.g. gk.example.org/jobmanager-pbs
        rsl = [("globus_rsl", f"(queue={batch_queue})(jobtype=single)")] if batch_queue else []
        return [("grid_resource", f"gt2 {q.gatekeeper}"), *rsl]
    return [("grid_resource", f"arc {q.gatekeeper}")]


def _batch_queue(batch: PilotBatch) -> str:
    """The batch queue behind the CE: classic `localqueue`, else `queue`."""
    return batch.queue.localqueue or batch.queue.queue


def _limit_lines(batch: PilotBatch) -> list[tuple[str, str]]:
    """Memory, cores, walltime and the batch queue, then the hold/remove policy."""
    q = batch.queue
    held = f"(JobStatus == 5 && time() - EnteredCurrentStatus > {HELD_LIMIT})"
    if not q.jobmanager:
        out = [("request_memory", str(q.memory))] if q.memory > 0 else []
        out += [("request_cpus", str(q.corecount))] if q.corecount > 1 else []
        running = f"(JobStatus == 2 && time() - EnteredCurrentStatus > {q.maxtime or RUN_LIMIT})"
        return [*out, ("periodic_remove", f"{held} || {running}")]
    out = []
    if q.jobmanager == "htcondor-ce":  # the CE router reads these (HTCondor-CE docs, remote job submission)
        batch_queue = _batch_queue(batch)
        out += [("+remote_queue", _classad_string(batch_queue))] if batch_queue else []
        out += [("+maxMemory", str(q.memory))] if q.memory > 0 else []  # MB
        out += [("+maxWallTime", str(math.ceil(q.maxtime / 60)))] if q.maxtime > 0 else []  # minutes
        out += [("+xcount", str(q.corecount))] if q.corecount > 1 else []
    limit = q.maxtime + GRID_GRACE if q.maxtime > 0 else RUN_LIMIT
    idle = f"(JobStatus == 1 && time() - EnteredCurrentStatus > {IDLE_LIMIT})"
    running = f"(JobStatus == 2 && time() - EnteredCurrentStatus > {limit})"
    down = (
        f"GridResourceUnavailableTime =!= undefined && time() - GridResourceUnavailableTime > {CE_DOWN_LIMIT}"
    )
    return [*out, ("periodic_hold", down), ("periodic_remove", f"{held} || {idle} || {running}")]


def _environment(batch: PilotBatch) -> str:
    """The pilot's environment in the new syntax. X509_USER_PROXY is left to HTCondor: x509userproxy
    delegates the proxy to the node, where the factory's path would not exist."""
    env = {k: v for k, v in batch.pilot_environment("$(Process)").items() if k != "X509_USER_PROXY"}
    return _new_syntax(f"{key}={_word(value)}" for key, value in env.items())


def _word(text: str) -> str:
    """One argument or environment value: 'single-quoted' when it has blanks or quotes, '' inside."""
    if text and not any(c in text for c in " \t'"):
        return text
    return "'" + text.replace("'", "''") + "'"


def _new_syntax(words: Iterable[str]) -> str:
    """HTCondor's "new syntax" for arguments and environment: double-quoted, a " doubled."""
    return '"' + " ".join(words).replace('"', '""') + '"'


def _classad_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _normal(key: str) -> str:
    """A submit key as condor_submit matches it: case-insensitive, +attr and MY.attr alike."""
    key = key.lower().removeprefix("+")
    return key.removeprefix("my.")


def _names(key: str) -> set[str]:
    """`key` and the other names that set the same thing."""
    out = {key}
    for a, b in _SAME.items():
        if key in (a, b):
            out |= {a, b}
    return out


_IDENTITY = set().union(*(_names(k) for k in _PROTECTED))
_IDENTITY_REMOTE = {f"remote_{k}" for k in _IDENTITY - {"queue"}}  # +remote_X sets X on the CE's side


def jdladd_lines(jdladd: str, where: str, rendered: set[str]) -> list[str]:
    """The queue's extra submit lines, checked: `key = value`, not a queue statement, nothing the
    factory writes (`rendered`, normalised keys) nor the pilot's identity. SubmitError otherwise."""
    taken = set().union(*(_names(k) for k in rendered))
    out = []
    for n, raw in enumerate(jdladd.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        problem = _jdladd_problem(line, taken)
        if problem:
            raise SubmitError(f"{where}: jdladd line {n}: {problem}")
        key, _, value = line.partition("=")
        out.append(f"{key.strip()} = {value.strip()}")
    return out


def _jdladd_problem(line: str, taken: set[str]) -> str:
    if _QUEUE_STMT_RE.match(line):
        return "a queue statement; the factory queues the batch's pilots itself"
    key, sep, value = (part.strip() for part in line.partition("="))
    if not sep:
        return f"{line!r} is not 'key = value'"
    if not _KEY_RE.match(key):
        return f"{key!r} is not a submit key or +Attribute"
    name = _normal(key)
    if name in _IDENTITY or name in _IDENTITY_REMOTE:
        return f"{key} is the pilot's identity or credential; only the factory sets it"
    if name in taken:
        return f"{key} is already set by the factory; jdladd adds lines, it does not replace them"
    if not value:
        return f"{key} has no value"
    if value.endswith("\\"):
        return f"the value of {key} ends with a backslash (it would continue onto the next line)"
    if "$env(" in value.lower():
        return f"the value of {key} uses $ENV(), which would copy the factory's environment into the job"
    return ""


def parse_submit_output(text: str) -> list[str]:
    """The job ids condor_submit reports: "N job(s) submitted to cluster C." -> C.0 ... C.(N-1)."""
    return [f"{m.group(2)}.{i}" for m in _SUBMITTED_RE.finditer(text) for i in range(int(m.group(1)))]


def parse_jobs_json(text: str) -> dict[str, BatchStatus]:
    """The job ads `condor_q -json` / `condor_history -json` print (a JSON list; nothing at all when
    no job matched), by job id. BatchCommandError when it is not such a list."""
    if not text.strip():
        return {}
    try:
        ads = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BatchCommandError(f"HTCondor printed what is not a JSON ClassAd list: {exc}") from exc
    if not isinstance(ads, list):
        raise BatchCommandError("HTCondor printed JSON that is not a list of job ads")
    out = {}
    for ad in ads:
        ids = [ad.get(k) if isinstance(ad, dict) else None for k in ("ClusterId", "ProcId", "JobStatus")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
            raise BatchCommandError(f"a job ad without integer ClusterId, ProcId and JobStatus: {ad!r:.200}")
        out[f"{ids[0]}.{ids[1]}"] = _status(ad)
    return out


def _status(ad: dict[str, Any]) -> BatchStatus:
    """JobStatus 1 idle, 2 running, 3 removed, 4 completed, 5 held, 6 transferring output, 7 suspended."""
    host = str(ad.get("RemoteHost") or ad.get("LastRemoteHost") or "").rpartition("@")[2]  # slot1_2@wn
    code = ad.get("JobStatus")
    if code == 4 and ad.get("ExitBySignal") is True:
        return BatchStatus(
            BatchState.failed, info=f"completed: {_signal(ad.get('ExitSignal'))}", workernode=host
        )
    if code == 4:
        exit_code = ad.get("ExitCode")
        exit_code = exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None
        return BatchStatus(BatchState.done, exit_code, "completed", host)
    if code == 3:
        reason = ad.get("RemoveReason")
        return BatchStatus(
            BatchState.failed, info=f"removed: {reason}" if reason else "removed", workernode=host
        )
    if code == 5:
        return BatchStatus(BatchState.queued, info=f"held: {ad.get('HoldReason') or 'no reason given'}",
                           workernode=host)  # fmt: skip
    words = {1: (BatchState.queued, "idle"), 2: (BatchState.running, "running"),
             6: (BatchState.running, "transferring output"), 7: (BatchState.queued, "suspended")}  # fmt: skip
    state, info = words.get(code, (BatchState.queued, f"JobStatus={code}"))  # unknown: not concluded as ended
    return BatchStatus(state, info=info, workernode=host)


def _signal(number: Any) -> str:
    try:
        return f"killed by signal {number} ({signal.Signals(number).name})"
    except (ValueError, TypeError):
        return f"killed by signal {number}"


def _job_ids(ids: Sequence[str]) -> list[str]:
    """The ids, each `cluster.proc` (they go on a command line), without repeats."""
    for i in ids:
        if not isinstance(i, str) or not _ID_RE.match(i):
            raise ValueError(f"{i!r} is not an HTCondor job id (cluster.proc)")
    return list(dict.fromkeys(ids))


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


class CondorSubmitter:
    name = "condor"
    render = staticmethod(render)
    parse_submit_output = staticmethod(parse_submit_output)
    parse_jobs_json = staticmethod(parse_jobs_json)

    def __init__(self, *, run: Runner = commands.run) -> None:
        self._run = run

    def submit(self, batch: PilotBatch) -> list[str]:
        where = f"queue {batch.queue.nickname}"
        text = render(batch)
        path = batch.log_dir / f"{batch.name}.jdl"
        try:
            batch.log_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise SubmitError(f"{where}: cannot write the submit description {path}: {exc}") from exc
        try:
            result = self._run(["condor_submit", str(path)])
        except BatchCommandError as exc:
            raise SubmitError(f"{where}: {exc}") from exc
        ids = parse_submit_output(result.stdout)
        said = (result.stderr.strip() or result.stdout.strip())[-2000:]
        if result.returncode != 0:
            raise SubmitError(f"{where}: condor_submit {path} exited with {result.returncode}: {said}",
                              submitted=ids[: batch.count])  # fmt: skip
        if len(ids) != batch.count:
            raise SubmitError(f"{where}: condor_submit reported {len(ids)} job(s) for {batch.count} pilots: {said}",
                              submitted=ids[: batch.count])  # fmt: skip
        log.info("%s: %d pilot(s) %s.0-%d submitted as HTCondor jobs %s-%s", where, batch.count, batch.name,
                 batch.count - 1, ids[0], ids[-1])  # fmt: skip
        return ids

    def status(self, ids: Sequence[str]) -> dict[str, BatchStatus]:
        """condor_q for the ids, then condor_history for those no longer queued; ids neither knows
        are left out."""
        wanted = _job_ids(ids)
        found: dict[str, BatchStatus] = {}
        for chunk in _chunks(wanted):
            found.update(self._query(["condor_q", "-json", "-attributes", ",".join(ATTRIBUTES), *chunk]))
        gone = [i for i in wanted if i not in found]
        for chunk in _chunks(gone):
            argv = ["condor_history", "-json", "-attributes", ",".join(ATTRIBUTES), "-limit", str(len(chunk))]
            found.update(self._query([*argv, *chunk]))
        return {i: found[i] for i in wanted if i in found}

    def _query(self, argv: list[str]) -> dict[str, BatchStatus]:
        return parse_jobs_json(commands.checked(self._run(argv)).stdout)

    def cancel(self, ids: Sequence[str]) -> None:
        for chunk in _chunks(_job_ids(ids)):
            commands.checked(self._run(["condor_rm", *chunk]))
