"""The pilot code as one tarball the wrapper can fetch (PILOT_CODE_URL) and check (its sha256).

It holds what a worker node needs to run `python -m pilot`: the pilot package and the wire
contract it imports (panda_server/protocol). Built reproducibly (sorted names, fixed times and
owners), so the same code always has the same checksum.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTENTS = ("pilot", "panda_server/__init__.py", "panda_server/protocol")
NAME = "pilotcode.tar.gz"


def build(out_dir: Path, root: Path = ROOT) -> tuple[Path, str]:
    """Write <out_dir>/pilotcode.tar.gz (replaced atomically); returns its path and sha256."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for path in _files(root):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    data = buffer.getvalue()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / NAME
    tmp = out_dir / f".{NAME}.{os.getpid()}"
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target, hashlib.sha256(data).hexdigest()


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for entry in CONTENTS:
        path = root / entry
        if path.is_file():
            found.append(path)
            continue
        found += [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(found)
