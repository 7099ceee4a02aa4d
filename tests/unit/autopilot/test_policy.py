"""The classic AutoPilot decision table, row by row, and the caps AutoPilot-WMS adds after it."""

from __future__ import annotations

import pytest

from autopilot.policy import Decision, QueueView, capped, decide

ONLINE = {"queue_status": "online", "cloud_status": "online"}

# (case, view fields, pilots, a word of the reason): in the order of the classic rules
TABLE = [
    # 1. offline / error queue or cloud: none, whatever waits
    ("queue offline", dict(queue_status="offline", cloud_status="online", nqueue=2, activated=50), 0, "queue offline"),
    ("queue error", dict(queue_status="error", cloud_status="online", nqueue=2, activated=50), 0, "queue error"),
    ("cloud offline", dict(queue_status="online", cloud_status="offline", nqueue=2, activated=50), 0, "cloud offline"),
    ("offline beats test", dict(queue_status="test", cloud_status="offline", nqueue=2), 0, "cloud offline"),
    # 2. pilotlimit reached
    ("pilotlimit reached", dict(**ONLINE, nqueue=2, pilotlimit=5, activated=9, inactive=1, active=4), 0,
     "pilotlimit 5 reached"),
    ("pilotlimit exceeded", dict(**ONLINE, nqueue=2, pilotlimit=5, activated=9, active=7), 0, "pilotlimit"),
    ("pilotlimit 0 = none", dict(**ONLINE, nqueue=2, pilotlimit=0, activated=9, active=700), 2, "activated"),
    # 3. transferringlimit reached
    ("transferringlimit reached", dict(**ONLINE, nqueue=2, transferringlimit=10, transferring=10, activated=3), 0,
     "transferringlimit 10"),
    ("below transferringlimit", dict(**ONLINE, nqueue=2, transferringlimit=10, transferring=9, activated=3), 2,
     "activated"),
    # 4. test queue or cloud: one test pilot, only when none is queued and total <= nqueue
    ("test queue, no pilot", dict(queue_status="test", cloud_status="online", nqueue=2, activated=40), 1, "test"),
    ("test cloud, no pilot", dict(queue_status="online", cloud_status="test", nqueue=2), 1, "test pilot"),
    ("test queue, one queued", dict(queue_status="test", cloud_status="online", nqueue=2, inactive=1), 0,
     "1 queued"),
    ("test queue, total > nqueue", dict(queue_status="test", cloud_status="online", nqueue=2, active=3), 0,
     "3 pilots"),
    ("test queue, total = nqueue", dict(queue_status="test", cloud_status="online", nqueue=2, active=2), 1,
     "test pilot"),
    # 5. activated jobs: nqueue pilots while queued < nqueue, or activated > queued < nqueue x depthboost
    ("activated, nothing queued", dict(**ONLINE, nqueue=3, activated=1), 3, "0 queued < nqueue 3"),
    ("activated, queued < nqueue", dict(**ONLINE, nqueue=3, activated=10, inactive=2, active=50), 3, "< nqueue 3"),
    ("depthboost top-up", dict(**ONLINE, nqueue=3, activated=10, inactive=5), 3, "depthboost 2"),
    ("depth reached", dict(**ONLINE, nqueue=3, activated=10, inactive=6), 0, "deep enough"),
    ("depthboost 4", dict(**ONLINE, nqueue=3, depthboost=4, activated=20, inactive=11), 3, "depthboost 4"),
    ("depthboost 0 means 2", dict(**ONLINE, nqueue=3, depthboost=0, activated=20, inactive=6), 0, "deep enough"),
    ("queued >= activated", dict(**ONLINE, nqueue=3, activated=4, inactive=4), 0, "deep enough"),
    ("brokeroff still served", dict(queue_status="brokeroff", cloud_status="online", nqueue=2, activated=5), 2,
     "activated"),
    ("nqueue 0 = none", dict(**ONLINE, nqueue=0, activated=5), 0, "deep enough"),
    # 6. nothing activated: one idle pilot while queued < nqueue, every idlepilotsuppression-th cycle
    ("idle pilot", dict(**ONLINE, nqueue=2, inactive=1, cycle=7), 1, "idle pilot"),
    ("idle, queue full", dict(**ONLINE, nqueue=2, inactive=2), 0, "2 queued"),
    ("idle suppressed", dict(**ONLINE, nqueue=2, idlepilotsuppression=5, cycle=3), 0, "suppressed"),
    ("idle on the 5th cycle", dict(**ONLINE, nqueue=2, idlepilotsuppression=5, cycle=10), 1, "idle pilot"),
    ("suppression 0 means every cycle", dict(**ONLINE, nqueue=2, idlepilotsuppression=0, cycle=3), 1, "idle"),
    ("idle, running pilots do not count", dict(**ONLINE, nqueue=2, active=30), 1, "idle pilot"),
]  # fmt: skip


@pytest.mark.parametrize("case, fields, pilots, word", TABLE, ids=[row[0] for row in TABLE])
def test_the_classic_table(case, fields, pilots, word):
    d = decide(QueueView(**fields))
    assert d.n == pilots
    assert word in d.reason


def test_capped_never_passes_the_pilotlimit():
    # the classic table submits nqueue (5) at 3 of 4: one over the limit; the cap keeps it to 1
    v = QueueView(**ONLINE, nqueue=5, pilotlimit=4, activated=20, active=3)
    d = decide(v)
    assert d.n == 5
    c = capped(d, v, max_per_cycle=10, factory_room=None)
    assert c.n == 1 and "capped to 1 by pilotlimit 4" in c.reason


def test_capped_per_cycle_and_by_factory_room():
    v = QueueView(**ONLINE, nqueue=30, activated=100)
    assert capped(decide(v), v, max_per_cycle=10, factory_room=None).n == 10
    c = capped(decide(v), v, max_per_cycle=10, factory_room=4)
    assert c.n == 4 and "factory's pilot cap" in c.reason
    assert capped(decide(v), v, max_per_cycle=10, factory_room=0).n == 0
    assert capped(decide(v), v, max_per_cycle=10, factory_room=-3).n == 0  # over the cap already


def test_capped_leaves_a_decision_within_its_caps_alone():
    v = QueueView(**ONLINE, nqueue=2, activated=1)
    d = decide(v)
    assert capped(d, v, max_per_cycle=10, factory_room=50) is d
    assert capped(Decision(0, "x"), v, max_per_cycle=0, factory_room=0) == Decision(0, "x")
