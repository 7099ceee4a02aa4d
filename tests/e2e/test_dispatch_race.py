"""Eight pilots racing getJob on one queue over HTTPS never receive the same job."""

from __future__ import annotations

import threading

from panda_server.protocol.states import JobStatus
from tests.support.dbjobs import insert_job


def test_eight_pilots_over_https_never_share_a_job(live, engine):
    with engine.begin() as conn:
        ids = {insert_job(conn, JobStatus.activated, site="CLOUDB_T1") for _ in range(80)}
    got: list[list[int]] = [[] for _ in range(8)]
    errors: list[str] = []
    barrier = threading.Barrier(8, timeout=30)

    def pilot(n: int) -> None:
        session = live.session(live.pki.pilot_proxy)
        barrier.wait()
        for _ in range(40):  # bounded: 8 × 40 attempts > 80 jobs
            r = session.post(f"{live.https_url}/server/panda/getJob", timeout=30,
                             data={"siteName": "CLOUDB_T1", "prodSourceLabel": "managed", "node": f"n{n}"})  # fmt: skip
            if "StatusCode=20" in r.text:
                return
            if "StatusCode=0" not in r.text:
                errors.append(r.text[:200])
                return
            got[n].append(int(r.text.split("PandaID=")[1].split("&")[0]))

    threads = [threading.Thread(target=pilot, args=(n,)) for n in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    flat = [i for lst in got for i in lst]
    assert not errors
    assert len(flat) == len(set(flat)) == 80
    assert set(flat) == ids
    assert sum(1 for lst in got if lst) >= 2
