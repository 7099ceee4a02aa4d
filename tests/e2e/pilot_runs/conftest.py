"""Fixtures of the pilot's end-to-end tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def pilot_dir(workdir, request):
    """A world-traversable work dir (-a) of its own for each test's pilots."""
    d = workdir / "pilots" / request.node.name
    d.mkdir(parents=True, exist_ok=True)
    return d
