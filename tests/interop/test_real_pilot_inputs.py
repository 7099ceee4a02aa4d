"""The unmodified PyPI panda-pilot 3.7.0.36 stages inputs in from our directory SE.

Jobs with inputs cannot go through the Setupper (it only activates jobs without inputs), so
each test inserts an `activated` job with its file rows directly, puts the inputs on the SE of
CLOUDA_T1 (`<storage_root>/CLOUDA_T1_DATADISK`) at their Rucio deterministic paths, and runs
the real pilot once (realpilot.run_pilot) with `--input-destination-dir <SE dir>`.

What 3.7 does with inputs (pilot/copytool/mv.py, pilot/control/data.py `_stage_in`): our
queuedata announces copytool `mv` with catchall `mv_final_destination`, so stage-in takes each
input from `<input-destination-dir>/<scope with . → />/<md5(scope:lfn)[0:2]>/<[2:4]>/<lfn>`
and **symlinks** it into the job dir (`ln -s`, mv's default copy_in type): the file on the SE is
neither moved nor copied. Without `--input-destination-dir` the source would be
`<job dir>/<rucio path>` (a dangling link: 3.7 needs the option). Outputs and the log are
**moved** (`mv`) to their SURL path on the SE.

A wrong catalogue checksum is **not** detected: 3.7's `mv` copytool verifies neither checksum
nor size on stage-in (only its rucio, xrdcp and lsm copytools call `verify_catalog_checksum`,
which would give 1171 GETADMISMATCH), and `ln -s` cannot fail on content. So there is no
stage-in error code: the payload reads the SE's file, the pilot reports `finished`, and the
Adder finishes the job (observed; test_bad_input_checksum_goes_unnoticed records it).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import re
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from panda_server.db import tables as t
from panda_server.protocol.jobspec import FileSpec
from tests.interop import realpilot
from tests.interop.bench import (
    DDM,
    PILOT_AGENT,
    PILOT_TIMEOUT,
    QUEUE,
    TRF_BASE,
    PilotBench,
    assert_matches_file,
    payload_stdout,
    utcnow,
)
from tests.support.dbjobs import insert_job
from tests.support.jobs import simple_job

pytestmark = pytest.mark.interop

IN_SCOPE = "test.inputs"  # a dotted scope: its Rucio path is test/inputs/<xx>/<yy>/<lfn>
OUT_SCOPE = "test"
SCRIPT_NAME = "runcat.sh"
# ./runcat.sh <output> <input>...: says how each input reached the work dir, then concatenates.
CAT_SCRIPT = """#!/bin/bash
out=$1; shift
for f in "$@"; do
  if [ -L "$f" ]; then echo "input $f: symlink to $(readlink "$f")"
  elif [ -f "$f" ]; then echo "input $f: regular file"
  else echo "input $f: missing"; fi
done
cat "$@" > "$out" || exit 3
echo "wrote $out: $(wc -c < "$out") bytes"
"""


@dataclasses.dataclass(frozen=True)
class Placed:
    """An input file put on the SE, with what it looked like before the pilot ran."""

    lfn: str
    path: Path
    data: bytes
    stat: tuple[int, int, int]  # (inode, size, mtime_ns)


def rucio_path(se_dir: Path, scope: str, lfn: str) -> Path:
    """The Rucio deterministic path of a file on a directory SE (reference/pilot.md §4)."""
    digest = hashlib.md5(f"{scope}:{lfn}".encode()).hexdigest()
    return se_dir / scope.replace(".", "/") / digest[:2] / digest[2:4] / lfn


def adler32(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def file_state(path: Path) -> tuple[int, int, int]:
    st = path.lstat()  # lstat: a symlink left in place of the file must not look the same
    return st.st_ino, st.st_size, st.st_mtime_ns


def place_inputs(se_dir: Path, files: dict[str, bytes]) -> list[Placed]:
    """Write the inputs at their Rucio paths; give the SE tree to the pilot's user.

    The pilot's user owns the whole SE (it must create the output directories under the
    shared `test/` prefix, and a real mv SE is writable by it), so nothing but the copytool's
    own behaviour keeps it from moving the inputs away: the tests check it does not.
    """
    placed = []
    for lfn, data in files.items():
        path = rucio_path(se_dir, IN_SCOPE, lfn)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
        placed.append(Placed(lfn, path, data, (0, 0, 0)))
    for dirpath, dirs, names in os.walk(se_dir):
        for name in [*dirs, *names]:
            shutil.chown(os.path.join(dirpath, name), realpilot.PILOT_USER, realpilot.PILOT_USER)
    for p in placed:
        realpilot.check_user_access(p.path, "-r")
    return [dataclasses.replace(p, stat=file_state(p.path)) for p in placed]


@dataclasses.dataclass
class InputJob:
    panda_id: int
    inputs: list[Placed]
    out_lfn: str


def insert_input_job(bench: PilotBench, contents: dict[str, bytes], catalogue: dict[str, bytes]) -> InputJob:
    """An activated `test` job reading the inputs (`contents` on the SE) and writing one output.

    `catalogue[lfn]` is what the file rows (hence getJob's fsize/checksum) describe. The output
    row has no GUID, as submitters leave it (the Adder takes the one the pilot reports).
    """
    inputs = place_inputs(bench.se_dir, contents)
    out_lfn = f"out.{uuid.uuid4().hex[:10]}.dat"
    params = " ".join([out_lfn, *(p.lfn for p in inputs)])
    job = simple_job(QUEUE, label="test", transformation=TRF_BASE + SCRIPT_NAME, params=params)
    for p in inputs:
        data = catalogue[p.lfn]
        job.add_file(FileSpec(lfn=p.lfn, type="input", dataset=f"{IN_SCOPE}.ds", prodDBlock=f"{IN_SCOPE}.ds",
                              scope=IN_SCOPE, GUID=str(uuid.uuid4()), fsize=len(data),
                              checksum=f"ad:{adler32(data)}", status="ready"))  # fmt: skip
    job.add_file(FileSpec(lfn=out_lfn, type="output", dataset="test.out", destinationDBlock="test.out",
                          scope=OUT_SCOPE, status="unknown"))  # fmt: skip
    with bench.engine.begin() as conn:
        panda_id = insert_job(conn, "activated", job=job, now=utcnow())
    return InputJob(panda_id, inputs, out_lfn)


def files_of(bench: PilotBench, panda_id: int) -> dict[str, dict[str, Any]]:
    """{lfn: file row} of a job."""
    f = t.filestable4
    with bench.engine.connect() as conn:
        rows = conn.execute(sa.select(f).where(f.c.PandaID == panda_id)).mappings().all()
    return {r["lfn"]: dict(r) for r in rows}


def run(bench: PilotBench, https_log, job: InputJob) -> tuple[realpilot.PilotRun, list[Any], str]:
    """Run the pilot on the job; (run, requests the server saw, server log text since)."""
    env = bench.pilot_env(SCRIPT_NAME, CAT_SCRIPT)
    realpilot.check_user_access(bench.se_dir, "-x")
    offset = https_log.offset()
    pilot = bench.run_pilot(env, extra_args=["--input-destination-dir", str(bench.se_dir)])
    return pilot, https_log.requests_since(offset), https_log.text_since(offset)


def explain(run_: realpilot.PilotRun, calls: list[Any]) -> str:
    """Context for a failed assertion: the requests, then the pilot's data and state lines.

    Not test_real_pilot.explain: its pilotlog.txt tail only covers the pilot's wind-down.
    """
    keep = re.compile(r"copytool|stage-?in|stage-?out|transferr|has state|exit_code|ERROR|FATAL|Error")
    lines = [line[:400] for line in run_.stdout.splitlines() if keep.search(line)]
    return (f"pilot rc={run_.returncode} after {run_.elapsed:.0f} s (stopped={run_.stopped}); "
            f"requests: {[str(c) for c in calls]}\n--- pilot log (data and state lines) ---\n"
            + "\n".join(lines[-60:]) + f"\n--- pilot stderr ---\n{realpilot.last_lines(run_.stderr, 20)}")  # fmt: skip


def job_definition(run_: realpilot.PilotRun) -> dict[str, str]:
    """The getJob reply as the pilot logged it (`job definition = {...}`, a Python repr)."""
    found = re.search(r"\| job definition = (\{.*\})$", run_.stdout, re.MULTILINE)
    assert found, "the pilot logged no job definition"
    return ast.literal_eval(found[1])


def assert_untouched(inputs: list[Placed], why: str) -> None:
    """Each input is still the same regular file (same inode, size, mtime, bytes) on the SE."""
    for p in inputs:
        assert p.path.is_file() and not p.path.is_symlink(), f"{p.path} was moved away; {why}"
        assert (file_state(p.path), p.path.read_bytes()) == (p.stat, p.data), f"{p.path} changed; {why}"


def assert_symlinked(run_: realpilot.PilotRun, job: InputJob, stdout: str, why: str) -> None:
    """The pilot linked each SE file into the job dir; the payload saw symlinks to them."""
    log = run_.stdout  # pilotlog.txt is restarted after the job; -d puts everything on stdout
    for p in job.inputs:
        linked = re.search(rf"transferring file {re.escape(p.lfn)} from (\S+) to (\S+)", log)
        assert linked, f"no stage-in of {p.lfn} in the pilot log; {why}"
        assert linked[1] == str(p.path), why
        assert linked[2].endswith(f"/PanDA_Pilot-{job.panda_id}/{p.lfn}"), why
        assert f"executing command: /usr/bin/env ln -s {linked[1]} {linked[2]}\n" in log, why
        assert f"input {p.lfn}: symlink to {p.path}" in stdout, stdout


def assert_dialogue(calls: list[Any], server_log: str, bench: PilotBench, panda_id: int, why: str) -> None:
    """Seven calls from the pilot, and getJob in the server's panda.PilotRequests log.

    With inputs 3.7 sends four updates, not three: copytool_in sends `running` before staging
    in, which its get_proper_state turns into the first (`starting`) update; execute_payloads'
    `starting` then goes out as `running`, and run_payload sends `running` again once the
    payload process exists; then the final one. The server sees starting → running → holding.
    """
    assert [str(c) for c in calls] == [
        f"GET /cache/schedconfig/{QUEUE}.all.json 200", "GET /cache/ddmendpoints.json 200",
        "POST /server/panda/getJob 200", *["POST /server/panda/updateJob 200"] * 4,
    ], why  # fmt: skip
    assert all(c.agent.startswith(PILOT_AGENT) for c in calls), why
    assert "panda.PilotRequests [" in server_log and (
        f"method=getJob,site={QUEUE},node={bench.node},type=test" in server_log
    ), why
    transitions = re.findall(rf"PandaID={panda_id} status (\w+) -> (\w+)", server_log)
    assert transitions == [
        ("activated", "sent"), ("sent", "starting"), ("starting", "running"), ("running", "holding"),
    ], why  # fmt: skip


def finish_with_adder(bench: PilotBench, job: InputJob, why: str) -> dict[str, dict[str, Any]]:
    """The pilot's finished report → the Adder → finished; the output and log rows match the SE."""
    held = bench.job(job.panda_id)
    assert (held["table"], held["jobStatus"], held["pilotErrorCode"]) == ("jobsactive4", "holding", 0), why
    report = bench.output_report(job.panda_id)
    assert report is not None and report["jobStatus"] == "finished", why
    reported = json.loads(report["data"])

    summary = bench.run_adder()

    assert (summary.finished, summary.failed) == (1, 0), why
    done = bench.job(job.panda_id)
    assert (done["table"], done["jobStatus"]) == ("jobsarchived4", "finished"), why
    rows = files_of(bench, job.panda_id)
    log_lfn = f"log.{job.panda_id:05d}.job.log.tgz"
    assert set(reported) == {job.out_lfn, log_lfn}, reported  # the report lists outputs only
    for lfn in (job.out_lfn, log_lfn):
        assert_matches_file(rows[lfn], bench.staged(rows[lfn]["scope"], lfn))
    # the log keeps the GUID it was dispatched with (logGUID); for other outputs 3.7's generic
    # user makes no GUID (only its ATLAS user does, or a payload jobReport.json gives one), so
    # it reports "" and the Adder records that, as the real AdderGen does (file.GUID = guid)
    assert rows[log_lfn]["GUID"] and reported[log_lfn]["guid"].lower() == rows[log_lfn]["GUID"].lower()
    out_row = rows[job.out_lfn]
    assert reported[job.out_lfn]["guid"] == "" and not out_row["GUID"], (out_row, reported)
    for p in job.inputs:  # the Adder leaves input rows alone
        assert rows[p.lfn]["status"] == "ready", rows[p.lfn]
    assert bench.output_report(job.panda_id) is None
    return rows


@pytest.mark.timeout(PILOT_TIMEOUT + 150)
def test_real_pilot_stages_in_two_inputs_and_out_one_output(bench, https_log):
    contents = {f"in{i}.{uuid.uuid4().hex[:10]}.txt": f"input {i} for PanDA-WMS\n".encode() * (i * 40)
                for i in (1, 2)}  # fmt: skip
    job = insert_input_job(bench, contents, catalogue=contents)

    pilot, calls, server_log = run(bench, https_log, job)

    why = explain(pilot, calls)
    assert_dialogue(calls, server_log, bench, job.panda_id, why)
    sent = job_definition(pilot)  # what our getJob reply told the pilot about the inputs
    assert sent["inFiles"] == ",".join(contents) and sent["scopeIn"] == f"{IN_SCOPE},{IN_SCOPE}", sent
    assert sent["fsize"] == ",".join(str(len(d)) for d in contents.values()), sent
    assert sent["checksum"] == ",".join(f"ad:{adler32(d)}" for d in contents.values()), sent
    assert sent["ddmEndPointIn"] == f"{DDM},{DDM}" and sent["ddmEndPointOut"] == f"{DDM},{DDM}", sent
    assert sent["outFiles"] == f"{job.out_lfn},log.{job.panda_id:05d}.job.log.tgz", sent
    rows = finish_with_adder(bench, job, why)
    out = bench.staged(OUT_SCOPE, job.out_lfn)
    assert out.read_bytes() == b"".join(contents.values()), why  # the payload read both inputs
    assert rows[job.out_lfn]["fsize"] == sum(map(len, contents.values()))
    assert_untouched(job.inputs, why)
    stdout = payload_stdout(bench.staged(OUT_SCOPE, f"log.{job.panda_id:05d}.job.log.tgz"))
    assert_symlinked(pilot, job, stdout, why)
    assert f"wrote {job.out_lfn}: {rows[job.out_lfn]['fsize']} bytes" in stdout, stdout
    # nothing but the two inputs, the output and the log on the SE
    assert realpilot.find_outputs(bench.se_dir) == sorted(
        [p.path for p in job.inputs] + [out, bench.staged(OUT_SCOPE, f"log.{job.panda_id:05d}.job.log.tgz")]
    ), why
    print(f"\nreal pilot (inputs): {pilot.elapsed:.1f} s, stopped={pilot.stopped}")


@pytest.mark.timeout(PILOT_TIMEOUT + 150)
def test_bad_input_checksum_goes_unnoticed(bench, https_log):
    """The catalogue's adler32 of one input is not that of the SE's file (same size): 3.7's
    `mv` stage-in does not check it, so the job runs on the SE's bytes and finishes."""
    good, bad = (f"in{i}.{uuid.uuid4().hex[:10]}.txt" for i in (1, 2))
    contents = {good: b"good input\n" * 20, bad: b"the file on the SE\n" * 10}
    catalogue = {**contents, bad: b"what the catalogue\n" * 10}
    assert len(catalogue[bad]) == len(contents[bad]) and adler32(catalogue[bad]) != adler32(contents[bad])
    job = insert_input_job(bench, contents, catalogue=catalogue)
    assert files_of(bench, job.panda_id)[bad]["checksum"] == f"ad:{adler32(catalogue[bad])}"

    pilot, calls, server_log = run(bench, https_log, job)

    why = explain(pilot, calls)
    assert_dialogue(calls, server_log, bench, job.panda_id, why)
    # the pilot got the catalogue's checksum and never compared it
    assert job_definition(pilot)["checksum"] == f"ad:{adler32(contents[good])},ad:{adler32(catalogue[bad])}"
    assert "mismatch" not in pilot.stdout and "stage-in finished" in pilot.stdout, why
    finish_with_adder(bench, job, why)
    out = bench.staged(OUT_SCOPE, job.out_lfn)
    assert out.read_bytes() == contents[good] + contents[bad], why  # the SE's bytes, not the catalogue's
    assert_untouched(job.inputs, why)
    print(f"\nreal pilot (bad checksum): {pilot.elapsed:.1f} s, stopped={pilot.stopped}")
