"""A worker node imports the wire contract without the server's dependencies."""

from __future__ import annotations

import subprocess
import sys

BLOCK = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('flask', 'sqlalchemy', 'psycopg', 'gunicorn', 'alembic'):\n"
    "            raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=60)


def test_protocol_imports_without_flask_or_sqlalchemy():
    modules = ["jobspec", "states", "codes", "wire", "identity", "dispatch", "transport"]
    code = "".join(f"import panda_server.protocol.{m}\n" for m in modules)
    code += "import client.api, client.config\nprint('ok')\n"
    proc = _run(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_block_really_blocks():
    proc = _run("import panda_server.db.tables\n")
    assert proc.returncode != 0 and "blocked: sqlalchemy" in proc.stderr


def test_panda_server_package_is_empty():
    proc = _run(
        "import panda_server, sys\nprint(sorted(m for m in sys.modules if m.startswith('panda_server')))\n"
    )
    assert proc.stdout.strip() == "['panda_server']"
