"""The pilot's copy tools against real storage: an xrootd SE, local directories and an HTTPS server."""

from __future__ import annotations

import http.server
import os
import ssl
import subprocess
import threading
import time
import types
from pathlib import Path

import pytest

from panda_server.pki import Authority, write_credential, write_hashed_ca_dir
from pilot import copytools
from pilot.copytools import FileTransfer, TransferContext, TransferError, TransferPolicy, stage_in, stage_out
from pilot.errors import PilotFailure
from pilot.util.checksum import adler32_file, md5_file
from tests.pilot.test_checksum_commands import live_processes_with
from tests.support.xrootd import hanging_server

FAST = TransferPolicy(attempts=2, backoff=0.1, timeout_fixed=60)
CTX = TransferContext()


def make_file(path: Path, size: int = 300_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def xrd_put(xrootd, local: Path, remote: str) -> str:
    """Upload with the xrdcp CLI itself (test set-up, independent of the code under test)."""
    env = {**os.environ, "XRD_CONNECTIONRETRY": "1"}
    url = f"{xrootd.url}/{remote}"
    subprocess.run(["xrdcp", "-s", "-f", "--path", str(local), url], check=True, timeout=60, env=env)
    return url


def failure(exc_info) -> PilotFailure:
    return exc_info.value


# ---------------------------------------------------------------- xrdcp against the real SE


def test_xrdcp_stage_out_then_stage_in_verified(xrootd, tmp_path):
    out = make_file(tmp_path / "work" / "AOD.01.pool.root", 2_500_000)
    size, adler = out.stat().st_size, adler32_file(out)
    url = f"{xrootd.url}//atlas/out/AOD.01.pool.root"
    [res] = stage_out(["xrdcp"], [FileTransfer(out.name, str(out), url)], policy=FAST, context=CTX)
    assert (res.fsize, res.adler32, res.tool, res.attempts) == (size, adler, "xrdcp", 1)
    stat = xrootd.xrdfs("stat", "/atlas/out/AOD.01.pool.root")
    assert f"Size:   {size}" in stat.stdout
    assert xrootd.xrdfs("query", "checksum", "/atlas/out/AOD.01.pool.root").stdout.split() == [
        "adler32",
        adler,
    ]
    # a second upload to the same place overwrites (-f), as a retried stage-out must
    stage_out(["xrdcp"], [FileTransfer(out.name, str(out), url)], policy=FAST, context=CTX)

    local = tmp_path / "job" / "AOD.01.pool.root"
    spec = FileTransfer(out.name, url, str(local), fsize=size, checksum=f"ad:{adler}")
    [res] = stage_in(["xrdcp"], [spec], policy=FAST, context=CTX)
    assert (res.fsize, res.adler32, res.tool, res.attempts) == (size, adler, "xrdcp", 1)
    assert local.read_bytes() == out.read_bytes()
    assert [p.name for p in local.parent.iterdir()] == [local.name]  # no temp file left


def test_xrdcp_stage_in_adler32_mismatch_is_1171(xrootd, tmp_path):
    url = xrd_put(xrootd, make_file(tmp_path / "src.bin"), "/atlas/in/ad-mismatch.bin")
    local = tmp_path / "job" / "ad-mismatch.bin"
    spec = FileTransfer("ad-mismatch.bin", url, str(local), fsize=300_000, checksum="ad:0badf00d")
    with pytest.raises(PilotFailure) as exc:
        stage_in(["xrdcp"], [spec], policy=FAST, context=CTX)
    assert failure(exc).code == 1171
    assert "xrdcp" in failure(exc).diag and "2 attempts" in failure(exc).diag and url in failure(exc).diag
    assert not local.exists()


def test_stage_in_md5_mismatch_is_1145_and_md5_match_passes(tmp_path):
    src = make_file(tmp_path / "se" / "EVNT.md5.root")
    local = tmp_path / "job" / src.name
    bad = FileTransfer(src.name, str(src), str(local), checksum="md5:" + "0" * 32)
    with pytest.raises(PilotFailure) as exc:
        stage_in(["cp"], [bad], policy=FAST, context=CTX)
    assert failure(exc).code == 1145 and "md5" in failure(exc).diag
    assert not local.exists() and src.exists()
    good = FileTransfer(src.name, str(src), str(local), checksum=f"md5:{md5_file(src)}")
    [res] = stage_in(["cp"], [good], policy=FAST, context=CTX)
    assert res.adler32 == adler32_file(src)


def test_stage_in_size_mismatch_is_1099(tmp_path):
    src = make_file(tmp_path / "se" / "size.bin", 1000)
    spec = FileTransfer(src.name, str(src), str(tmp_path / "job" / src.name), fsize=999)
    with pytest.raises(PilotFailure) as exc:
        stage_in(["cp"], [spec], policy=FAST, context=CTX)
    assert failure(exc).code == 1099 and "size" in failure(exc).diag


def test_missing_source_is_1331_without_retries(xrootd, tmp_path):
    url = f"{xrootd.url}//atlas/in/no-such-file.root"
    with pytest.raises(PilotFailure) as exc:
        stage_in(["xrdcp"], [FileTransfer("x", url, str(tmp_path / "x"))], policy=FAST, context=CTX)
    assert failure(exc).code == 1331
    assert "1 attempt " in failure(exc).diag and "[3011]" in failure(exc).diag
    with pytest.raises(PilotFailure) as exc:
        spec = FileTransfer("y", str(tmp_path / "se" / "nope"), str(tmp_path / "y"))
        stage_in(["cp"], [spec], policy=FAST, context=CTX)
    assert failure(exc).code == 1331


def test_hanging_se_times_out_with_1151_and_leaves_no_xrdcp(tmp_path):
    policy = TransferPolicy(attempts=2, backoff=0.2, timeout_fixed=2)
    with hanging_server() as se:
        spec = FileTransfer("x", f"{se.url}//x", str(tmp_path / "job" / "x"))
        start = time.monotonic()
        with pytest.raises(PilotFailure) as exc:
            stage_in(["xrdcp"], [spec], policy=policy, context=CTX)
        elapsed = time.monotonic() - start
        assert se.accepted  # xrdcp really connected to it
    assert failure(exc).code == 1151
    assert "timed out after 2 attempts of 2 s" in failure(exc).diag
    assert 4 <= elapsed < 40
    assert live_processes_with(f"127.0.0.1:{se.port}") == []
    assert not (tmp_path / "job" / "x").exists()


def test_abort_flag_stops_a_transfer_quickly(tmp_path):
    flag = threading.Event()
    ctx = TransferContext(should_abort=flag.is_set)
    with hanging_server() as se:
        timer = threading.Timer(1.0, flag.set)
        timer.start()
        start = time.monotonic()
        try:
            with pytest.raises(PilotFailure) as exc:
                spec = FileTransfer("x", f"{se.url}//x", str(tmp_path / "x"))
                stage_in(["xrdcp"], [spec], policy=TransferPolicy(timeout_fixed=120), context=ctx)
        finally:
            timer.cancel()
        elapsed = time.monotonic() - start
    assert failure(exc).code == 1099 and failure(exc).diag.startswith("aborted")
    assert elapsed < 10  # ~1 s plus the kill grace; generous for a shared machine
    assert live_processes_with(f"127.0.0.1:{se.port}") == []


# ---------------------------------------------------------------- cp and mv on directories


def test_cp_both_ways(tmp_path):
    src = make_file(tmp_path / "se" / "in" / "EVNT.01.root")
    local = tmp_path / "job" / "EVNT.01.root"
    spec = FileTransfer(src.name, f"file://{src}", str(local), src.stat().st_size, f"ad:{adler32_file(src)}")
    [res] = stage_in(["cp"], [spec], policy=FAST, context=CTX)
    assert local.read_bytes() == src.read_bytes() and not local.is_symlink() and res.tool == "cp"
    out = make_file(tmp_path / "job" / "HITS.01.root", 1234)
    dest = tmp_path / "se" / "out" / "deep" / "HITS.01.root"
    [res] = stage_out(["cp"], [FileTransfer(out.name, str(out), str(dest))], policy=FAST, context=CTX)
    assert dest.read_bytes() == out.read_bytes() and out.exists()
    assert (res.fsize, res.adler32) == (1234, adler32_file(out))
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


def test_mv_links_on_stage_in_and_moves_on_stage_out(tmp_path):
    src = make_file(tmp_path / "se" / "EVNT.02.root")
    local = tmp_path / "job" / "EVNT.02.root"
    spec = FileTransfer(src.name, str(src), str(local), src.stat().st_size, f"ad:{adler32_file(src)}")
    [res] = stage_in(["mv"], [spec], policy=FAST, context=CTX)
    assert local.is_symlink() and os.readlink(local) == str(src) and res.tool == "mv"
    out = make_file(tmp_path / "job" / "log.tgz", 4321)
    content, adler = out.read_bytes(), adler32_file(out)
    dest = tmp_path / "se" / "logs" / "log.tgz"
    [res] = stage_out(
        ["mv"], [FileTransfer(out.name, str(out), f"file://localhost{dest}")], policy=FAST, context=CTX
    )
    assert not out.exists() and dest.read_bytes() == content and res.adler32 == adler


def test_mv_stage_out_across_file_systems(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system")
    out = make_file(tmp_path / "job" / "x.root", 5000)
    dest = shm / f"copytools-test-{os.getpid()}" / "x.root"
    try:
        [res] = stage_out(["mv"], [FileTransfer(out.name, str(out), str(dest))], policy=FAST, context=CTX)
        assert not out.exists() and dest.stat().st_size == 5000 and res.fsize == 5000
    finally:
        dest.unlink(missing_ok=True)
        dest.parent.rmdir()


def test_stage_out_missing_and_empty_local_files(tmp_path):
    dest = str(tmp_path / "se" / "f")
    with pytest.raises(PilotFailure) as exc:
        stage_out(["cp"], [FileTransfer("f", str(tmp_path / "absent"), dest)], policy=FAST, context=CTX)
    assert failure(exc).code == 1165 and "absent" in failure(exc).diag
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(PilotFailure) as exc:
        stage_out(["cp"], [FileTransfer("f", str(empty), dest)], policy=FAST, context=CTX)
    assert failure(exc).code == 1350


def test_unknown_tool_is_1323(tmp_path):
    src = make_file(tmp_path / "a")
    with pytest.raises(PilotFailure) as exc:
        stage_in(["gfal-nope"], [FileTransfer("a", str(src), str(tmp_path / "b"))], policy=FAST, context=CTX)
    assert failure(exc).code == 1323 and "gfal-nope" in failure(exc).diag
    with pytest.raises(PilotFailure) as exc:
        stage_out(["cp", "lsm"], [FileTransfer("a", str(src), str(tmp_path / "b"))], policy=FAST, context=CTX)
    assert failure(exc).code == 1323


def test_no_tool_for_the_scheme_is_1137(xrootd, tmp_path):
    out = make_file(tmp_path / "o")
    with pytest.raises(PilotFailure) as exc:
        stage_out(
            ["https", "cp"], [FileTransfer("o", str(out), f"{xrootd.url}//o")], policy=FAST, context=CTX
        )
    assert failure(exc).code == 1137 and "root" in failure(exc).diag


# ---------------------------------------------------------------- the fallback chain


def broken_tool() -> types.ModuleType:
    """A real plug-in module (registered like any tool) whose transfers always fail."""
    tool = types.ModuleType("broken")
    tool.NAME, tool.SCHEMES_IN, tool.SCHEMES_OUT = "broken", {"", "file", "root"}, {"", "file", "root"}
    tool.calls = 0

    def copy(source, destination, *, timeout, context, fsize=None, adler32=None):
        tool.calls += 1
        raise TransferError("failed", "door closed")

    tool.copy = copy
    tool.stat = lambda url, *, timeout, context: (0, "00000001")
    return tool


def test_fallback_chain_uses_the_next_tool(monkeypatch, xrootd, tmp_path):
    broken = broken_tool()
    monkeypatch.setitem(copytools.TOOLS, "broken", broken)
    src = make_file(tmp_path / "src.root")
    url = xrd_put(xrootd, src, "/atlas/chain/src.root")
    spec = FileTransfer(
        src.name, url, str(tmp_path / "job" / src.name), src.stat().st_size, f"ad:{adler32_file(src)}"
    )
    # cp is skipped (cannot read root://), broken fails twice, xrdcp succeeds
    [res] = stage_in(["cp", "broken", "xrdcp"], [spec], policy=FAST, context=CTX)
    assert (res.tool, res.attempts, broken.calls) == ("xrdcp", 3, 2)
    out = make_file(tmp_path / "job" / "out.root")
    [res] = stage_out(
        ["broken", "cp"],
        [FileTransfer("out", str(out), str(tmp_path / "se" / "out"))],
        policy=FAST,
        context=CTX,
    )
    assert (res.tool, res.attempts) == ("cp", 3)


def test_every_tool_failing_names_them_all(monkeypatch, tmp_path):
    monkeypatch.setitem(copytools.TOOLS, "broken", broken_tool())
    spec = FileTransfer("f", str(tmp_path / "se" / "absent"), str(tmp_path / "job" / "f"))
    with pytest.raises(PilotFailure) as exc:
        stage_in(["broken", "cp"], [spec], policy=FAST, context=CTX)
    assert failure(exc).code == 1331  # the last tool's error decides the code
    assert (
        "cp " in failure(exc).diag
        and "broken failed after 2 attempts (last: door closed)" in failure(exc).diag
    )


# ---------------------------------------------------------------- https


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves files under `root`; /nolength/<name> omits Content-Length; HEAD adds an adler32 Digest."""

    root: Path

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        nolength = self.path.startswith("/nolength/")
        path = self.root / self.path.removeprefix("/nolength").lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        if not nolength:
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Digest", f"adler32={adler32_file(path)}")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """A real HTTPS server on 127.0.0.1 with a certificate from a throw-away CA: (base URL, root, CA dir)."""
    base = tmp_path_factory.mktemp("https")
    ca = Authority.create("/DC=test/CN=Copytools Test CA")
    host = ca.issue("/DC=test/CN=127.0.0.1", kind="host", sans=["127.0.0.1", "localhost"])
    write_credential(host, base / "host.pem", base / "host.key")
    write_hashed_ca_dir([ca.cert], base / "ca")
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(base / "host.pem", base / "host.key")
    root = base / "files"
    root.mkdir()
    handler = type("Handler", (_Handler,), {"root": root})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", root, str(base / "ca")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_https_download_verified_against_the_ca(https_server, tmp_path):
    url, root, ca_dir = https_server
    src = make_file(root / "lib.tgz", 200_000)
    spec = FileTransfer(
        "lib.tgz", f"{url}/lib.tgz", str(tmp_path / "job" / "lib.tgz"), 200_000, f"ad:{adler32_file(src)}"
    )
    [res] = stage_in(["https"], [spec], policy=FAST, context=TransferContext(ca_dir=ca_dir))
    assert res.tool == "https" and (tmp_path / "job" / "lib.tgz").read_bytes() == src.read_bytes()
    assert copytools.https.stat(f"{url}/lib.tgz", timeout=10, context=TransferContext(ca_dir=ca_dir)) == (
        200_000,
        adler32_file(src),
    )
    with pytest.raises(PilotFailure) as exc:  # without our CA the server is not trusted
        stage_in(["https"], [spec], policy=TransferPolicy(attempts=1, timeout_fixed=10), context=CTX)
    assert failure(exc).code == 1099 and "CERTIFICATE_VERIFY_FAILED" in failure(exc).diag


def test_https_404_is_1331(https_server, tmp_path):
    url, _root, ca_dir = https_server
    spec = FileTransfer("x", f"{url}/no-such.tgz", str(tmp_path / "x"))
    with pytest.raises(PilotFailure) as exc:
        stage_in(["https"], [spec], policy=FAST, context=TransferContext(ca_dir=ca_dir))
    assert failure(exc).code == 1331 and "404" in failure(exc).diag


@pytest.mark.parametrize("prefix", ["", "/nolength"])
def test_https_size_cap(https_server, tmp_path, prefix):
    url, root, ca_dir = https_server
    make_file(root / "big.bin", 300_000)
    local = tmp_path / "big.bin"
    spec = FileTransfer("big.bin", f"{url}{prefix}/big.bin", str(local), fsize=1000)
    with pytest.raises(PilotFailure) as exc:
        stage_in(["https"], [spec], policy=FAST, context=TransferContext(ca_dir=ca_dir))
    assert failure(exc).code == 1099 and "1000" in failure(exc).diag
    assert not local.exists() and list(tmp_path.iterdir()) == []


def test_policy_timeout_and_backoff():
    policy = TransferPolicy()
    assert policy.timeout(None) == 300 and policy.timeout(2_000_000_000) == 2300
    assert policy.timeout(10**13) == 10800
    assert TransferPolicy(timeout_fixed=7).timeout(10**12) == 7
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]


@pytest.mark.parametrize("tool", ["mv", "cp"])
def test_a_bad_file_already_in_place_is_never_deleted(tmp_path, tool):
    src = make_file(tmp_path / "job" / "in-place.root", 1000)
    spec = FileTransfer(src.name, str(src), str(src), 1000, "ad:0badf00d")
    with pytest.raises(PilotFailure) as exc:
        stage_in([tool], [spec], policy=FAST, context=CTX)
    assert failure(exc).code == 1171
    assert src.is_file() and src.stat().st_size == 1000


@pytest.mark.parametrize(("grow", "code"), [(0, 1172), (1, 1137)])
def test_stage_out_destination_mismatch(monkeypatch, tmp_path, grow, code):
    """A plug-in whose copy works but whose destination reads back different: the stat check catches it."""
    tool = types.ModuleType("liar")
    tool.NAME, tool.SCHEMES_IN, tool.SCHEMES_OUT = "liar", {""}, {""}
    tool.copy = copytools.cp.copy

    def stat(url, *, timeout, context):
        size, adler = copytools.cp.stat(url, timeout=timeout, context=context)
        return size + grow, adler if grow else "0badf00d"

    tool.stat = stat
    monkeypatch.setitem(copytools.TOOLS, "liar", tool)
    out = make_file(tmp_path / "job" / "o.root", 100)
    with pytest.raises(PilotFailure) as exc:
        stage_out(
            ["liar"], [FileTransfer("o", str(out), str(tmp_path / "se" / "o"))], policy=FAST, context=CTX
        )
    assert failure(exc).code == code and "2 attempts" in failure(exc).diag
