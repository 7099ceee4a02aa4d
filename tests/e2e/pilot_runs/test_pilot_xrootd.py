"""Our pilot with an XRootD storage element: xrdcp stage-in and stage-out with the sizes and
checksums recorded in the DB; checksum mismatch; a hanging source; direct reading (remote I/O).

Queues are added to schedconfig for these tests, with `se_path root://127.0.0.1:<port>//pandase`
and the copy tool xrdcp; the server exports their queuedata and DDM endpoints from that.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import time

import pytest

from pilot.infosys import rucio_path
from tests.support import pilots
from tests.support.xrootd import hanging_server

SE_DIR = "pandase"


@pytest.fixture(scope="module")
def xrd_queue(engine, schedconfig_loaded, xrootd):
    pilots.add_queue(
        engine, "XRD_T2", se_path=f"{xrootd.url}//{SE_DIR}", copytool="xrdcp", copytoolin="xrdcp"
    )
    return "XRD_T2"


def upload(xrootd, scope: str, lfn: str, data: bytes, tmp) -> str:
    local = tmp / lfn
    local.write_bytes(data)
    url = f"{xrootd.url}//{SE_DIR}/{rucio_path(scope, lfn)}"
    subprocess.run(["xrdcp", "-f", "--path", str(local), url], check=True, capture_output=True, timeout=60,
                   env={**os.environ, "XRD_CONNECTIONRETRY": "1"})  # fmt: skip
    return url


def se_stat(xrootd, scope: str, lfn: str) -> tuple[int, str]:
    path = f"/{SE_DIR}/{rucio_path(scope, lfn)}"
    size = int(xrootd.xrdfs("stat", path).stdout.split("Size:")[1].split()[0])
    checksum = xrootd.xrdfs("query", "checksum", path).stdout.split()[1]
    return size, checksum


def names(tag: str) -> tuple[str, str, str, str]:
    return f"in1.{tag}.dat", f"in2.{tag}.dat", f"out1.{tag}.dat", f"out2.{tag}.dat"


def test_inputs_and_two_outputs_over_xrdcp(live, engine, xrootd, xrd_queue, pilot_dir, tmp_path):
    in1, in2, out1, out2 = names(os.urandom(4).hex())
    data1, data2 = os.urandom(300_000), b"second input\n" * 1000
    for lfn, data in ((in1, data1), (in2, data2)):
        upload(xrootd, "test", lfn, data, tmp_path)
    job = pilots.shell_job(xrd_queue, f"cat {in1} {in2} > {out1}; wc -c {in1} {in2} > {out2}",
                           inputs=[(in1, data1), (in2, data2)], outputs=[out1, out2])  # fmt: skip
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, xrd_queue, pilot_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"stage-in {in1} from root://" in proc.stderr and "with xrdcp" in proc.stderr
    pilots.run_adder(engine)
    assert pilots.job_row(engine, pid)["jobStatus"] == "finished"
    files = pilots.file_rows(engine, pid)
    for lfn in (out1, out2, job.Files[-1].lfn):
        size, adler = se_stat(xrootd, "test", lfn)
        assert (files[lfn]["fsize"], files[lfn]["checksum"]) == (size, f"ad:{adler}"), lfn
        assert files[lfn]["status"] == "ready"
    assert files[out1]["fsize"] == len(data1) + len(data2)
    assert xrootd.path(f"/{SE_DIR}/{rucio_path('test', out1)}").read_bytes() == data1 + data2
    assert se_stat(xrootd, "test", in1)[0] == len(data1), "inputs stay on the SE"


def test_input_checksum_mismatch_is_detected(live, engine, xrootd, xrd_queue, pilot_dir, tmp_path):
    in1, _, out1, _ = names(os.urandom(4).hex())
    upload(xrootd, "test", in1, b"the real content\n", tmp_path)
    job = pilots.shell_job(xrd_queue, f"cp {in1} {out1}", inputs=[(in1, b"what the catalogue says\n")],
                           outputs=[out1])  # fmt: skip
    job.Files[0].fsize = len(b"the real content\n")  # same size: only the adler32 differs
    pid = pilots.insert_activated(engine, job)
    pilots.run_pilot(live, xrd_queue, pilot_dir, "--transfer-attempts", "2")
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1171, row["pilotErrorDiag"]  # GETADMISMATCH (adler32; md5 would be 1145)
    assert in1 in row["pilotErrorDiag"]
    pilots.run_adder(engine)
    assert pilots.job_row(engine, pid)["jobStatus"] == "failed"


def test_hanging_source_times_out_and_retries(live, engine, pilot_dir):
    with hanging_server() as hang:
        queue = "HANG_T2"
        pilots.add_queue(engine, queue, se_path=f"{hang.url}//{SE_DIR}", copytool="xrdcp", copytoolin="xrdcp")
        in1, _, _, _ = names(os.urandom(4).hex())
        job = pilots.shell_job(queue, "true", inputs=[(in1, b"never arrives")])
        pid = pilots.insert_activated(engine, job)
        t0 = time.monotonic()
        proc = pilots.run_pilot(live, queue, pilot_dir, "--transfer-timeout", "2", "--transfer-attempts", "2")
        elapsed = time.monotonic() - t0
        pilots.add_queue(engine, queue, status="offline", se_path=f"{hang.url}//{SE_DIR}")
    row = pilots.job_row(engine, pid)
    assert row["pilotErrorCode"] == 1151, row["pilotErrorDiag"]  # STAGEINTIMEOUT
    assert "2 attempts" in row["pilotErrorDiag"], row["pilotErrorDiag"]
    assert proc.returncode == 1
    assert elapsed < 90, "two 2 s attempts, not the default 300 s time-out"


def test_direct_read_hands_the_payload_a_root_url(live, engine, xrootd, pilot_dir, tmp_path):
    queue = "XRD_DA_T2"
    pilots.add_queue(engine, queue, se_path=f"{xrootd.url}//{SE_DIR}", copytool="xrdcp", copytoolin="xrdcp",
                     ddm="XRD_T2_DATADISK", direct_access_lan=True)  # fmt: skip
    in1, _, out1, _ = names(os.urandom(4).hex())
    data = b"read me remotely\n" * 100
    upload(xrootd, "test", in1, data, tmp_path)
    job = pilots.shell_job(queue, f"echo ARG={in1}; ls; xrdcp -s {in1} {out1}", inputs=[(in1, data)],
                           outputs=[out1], transferType="direct")  # fmt: skip
    pid = pilots.insert_activated(engine, job)
    proc = pilots.run_pilot(live, queue, pilot_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"direct read of {in1}" in proc.stderr
    pilots.run_adder(engine)
    assert pilots.job_row(engine, pid)["jobStatus"] == "finished"
    assert xrootd.path(f"/{SE_DIR}/{rucio_path('test', out1)}").read_bytes() == data
    log_lfn = job.Files[-1].lfn
    with tarfile.open(xrootd.path(f"/{SE_DIR}/{rucio_path('test', log_lfn)}")) as tar:
        stdout = tar.extractfile(f"tarball_PandaJob_{pid}_{queue}/payload.stdout").read().decode()
    assert f"ARG={xrootd.url}//{SE_DIR}/" in stdout, stdout
    assert in1 not in stdout.split("ARG=")[1].split("\n", 1)[1], "no local copy of the input in the job dir"
