"""The classic broker (panda_server/brokerage/broker.py) on small site tables: each filter with its
reason, the weight, the T1 bonus, data locality, bunching and the in-loop load."""

from __future__ import annotations

import collections
import dataclasses
import logging
import random

import pytest

from panda_server.brokerage import broker
from panda_server.brokerage.model import (
    Assignment,
    BrokerJob,
    CloudInfo,
    PilotStats,
    SiteInfo,
    SiteStats,
    Snapshot,
)


def site(name: str, *, cloud: str = "CLOUDA", **attrs) -> SiteInfo:
    tier = "T1" if name.endswith("T1") else "T2"
    kind = "analysis" if name.startswith("ANALY_") else "production"
    values = dict(siteid=name, cloud=cloud, tier=tier, type=kind, status="online", ddm=f"{name}_DATADISK")
    return SiteInfo(**{**values, **attrs})


def snap(*sites: SiteInfo, stats=None, pilots=None, replicas=None, clouds=None) -> Snapshot:
    clouds = clouds or [CloudInfo("CLOUDA", "CLOUDA_T1"), CloudInfo("CLOUDB", "CLOUDB_T1")]
    return Snapshot(
        sites={s.siteid: s for s in sites}, clouds={c.name: c for c in clouds}, stats=stats or {},
        pilots=pilots or {}, replicas=replicas or {},
    )  # fmt: skip


def job(panda_id: int = 1, label: str = "managed", **attrs) -> BrokerJob:
    attrs.setdefault("cloud", "CLOUDA")
    return BrokerJob(PandaID=panda_id, prodSourceLabel=label, **attrs)


def one(snapshot: Snapshot, **attrs) -> Assignment:
    [a] = broker.schedule([job(**attrs)], snapshot)
    return a


# --- each filter: the T1 passes, the T2 under test is skipped with its reason ----------------

FILTER_CASES = [
    ("offline", dict(status="offline"), {}, {}, "CLOUDA_T2_1 offline"),
    ("brokeroff", dict(status="brokeroff"), {}, {}, "CLOUDA_T2_1 brokeroff"),
    ("test status", dict(status="test"), {}, {}, "CLOUDA_T2_1 test (test jobs only)"),
    ("release", dict(releases=("14.2.20",)), dict(AtlasRelease="Atlas-14.2.21"), {},
     "CLOUDA_T2_1 release 14.2.21 not installed"),
    ("one of two releases", dict(releases=("14.2.20",)), dict(AtlasRelease="Atlas-14.2.20\nAtlas-14.2.22"), {},
     "CLOUDA_T2_1 release 14.2.22 not installed"),
    ("cmtconfig", dict(cmtconfigs=("x86_64-el9-gcc13-opt",)), dict(cmtConfig="i686-slc4-gcc34-opt"), {},
     "CLOUDA_T2_1 cmtconfig i686-slc4-gcc34-opt not installed"),
    ("memory", dict(memory=2000), dict(minRamCount=3000), {}, "CLOUDA_T2_1 memory 2000<3000"),
    ("disk", dict(maxinputsize=1000), dict(maxDiskCount=5000), {}, "CLOUDA_T2_1 maxinputsize 1000<5000"),
    ("space", dict(space=210), {}, dict(stats={"CLOUDA_T2_1": SiteStats(running=60)}),
     "CLOUDA_T2_1 space 195<200 GB"),
    ("no pilots", {}, {}, dict(pilots={"CLOUDA_T1": PilotStats(1, 1)}), "CLOUDA_T2_1 no pilots in 3 h"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "t2", "job_attrs", "extra", "reason"), FILTER_CASES, ids=[c[0] for c in FILTER_CASES]
)
def test_each_filter_skips_the_site_with_its_reason(what, t2, job_attrs, extra, reason):
    s = snap(site("CLOUDA_T1"), site("CLOUDA_T2_1", **t2), **extra)
    a = one(s, **job_attrs)
    assert a.site == "CLOUDA_T1"
    assert f"skipped: {reason}" in a.reason
    assert a.error_code is None


@pytest.mark.parametrize("name", ["CLOUDA_test", "CLOUDA_Test", "TestCLOUDA", "testsite"])
def test_test_named_sites_are_skipped(name):
    a = one(snap(site("CLOUDA_T1"), site(name)))
    assert a.site == "CLOUDA_T1"
    assert f"{name} test site (name)" in a.reason


def test_unknown_t1_is_named():
    a = one(snap(site("CLOUDA_T2_1")))  # cloudconfig names CLOUDA_T1, schedconfig has no such site
    assert a.site == "CLOUDA_T2_1"
    assert "CLOUDA_T1 unknown site" in a.reason


def test_test_status_site_takes_test_jobs():
    s = snap(site("CLOUDA_T1", status="offline"), site("CLOUDA_T2_1", status="test"))
    for label in ("test", "prod_test", "ptest"):
        assert one(s, label=label).site == "CLOUDA_T2_1"
    assert one(s).site is None


def test_empty_site_lists_check_nothing():
    s = snap(site("CLOUDA_T1", status="offline"), site("CLOUDA_T2_1", releases=(), cmtconfigs=(), memory=0))
    a = one(s, AtlasRelease="Atlas-99.0.0", cmtConfig="anything", minRamCount=10**6, maxDiskCount=10**6)
    assert a.site == "CLOUDA_T2_1"


def test_space_is_checked_at_t2s_only():
    s = snap(
        site("CLOUDA_T1", space=10), site("CLOUDA_T2_1", space=10), stats={"CLOUDA_T1": SiteStats(assigned=1)}
    )
    a = one(s)
    assert a.site == "CLOUDA_T1"
    assert "CLOUDA_T2_1 space 10<200 GB" in a.reason


# --- weight --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stats", "pilots", "expected"),
    [
        (
            SiteStats(assigned=2, activated=6, running=10),
            PilotStats(getJob=3, updateJob=5),
            0.5,
        ),  # 8/8/(10/5)
        (SiteStats(assigned=2, activated=6, running=0), PilotStats(getJob=3, updateJob=5), 1.0),  # per node 1
        (
            SiteStats(assigned=2, activated=6, running=10),
            PilotStats(getJob=8, updateJob=0),
            1.0,
        ),  # per node 1
        (SiteStats(assigned=2, activated=6, running=10), None, 8.0),  # no sitedata: nPilots taken as 1
        (SiteStats(), PilotStats(1, 1), 0.0),
    ],
)
def test_weight_formula(stats, pilots, expected):
    s = snap(site("CLOUDA_T2_1"), stats={"CLOUDA_T2_1": stats},
             pilots={"CLOUDA_T2_1": pilots} if pilots else {})  # fmt: skip
    need = broker.Need("managed", False, "CLOUDA", "", "", 0, 0, (), 1, 0.0)
    assert broker.winv("CLOUDA_T2_1", need, s, broker.Load(s)) == pytest.approx(expected)


def test_weights_appear_in_the_reason():
    s = snap(site("CLOUDA_T1"), site("CLOUDA_T2_1"),
             stats={"CLOUDA_T1": SiteStats(activated=3), "CLOUDA_T2_1": SiteStats(activated=1)})  # fmt: skip
    a = one(s)
    assert a.site == "CLOUDA_T2_1"
    assert a.reason == "CLOUDA_T2_1 (winv 1.00); weights: CLOUDA_T2_1 1.00, CLOUDA_T1 3.00"


T1_BONUS_CASES = [
    (5, 2.0, "CLOUDA_T1"),
    (4, 2.0, "CLOUDA_T2_1"),
    (5, 0.0, "CLOUDA_T1"),
    (5, 1.0, "CLOUDA_T2_1"),
]


@pytest.mark.parametrize(("n_inputs", "weight", "expected"), T1_BONUS_CASES)
def test_t1_bonus_for_more_than_four_inputs_per_job(n_inputs, weight, expected):
    # T1 winv 1.0 (halved to 0.5 with the bonus; weight 0 means the default 2.0), T2 winv 0.8
    s = snap(site("CLOUDA_T1"), site("CLOUDA_T2_1"), clouds=[CloudInfo("CLOUDA", "CLOUDA_T1", weight=weight)],
             stats={"CLOUDA_T1": SiteStats(activated=10), "CLOUDA_T2_1": SiteStats(activated=8)},
             pilots={"CLOUDA_T1": PilotStats(5, 5), "CLOUDA_T2_1": PilotStats(5, 5)})  # fmt: skip
    a = one(s, inputs=tuple(f"g{i}" for i in range(n_inputs)))
    assert a.site == expected


# --- choice: the two best, none above 2 × min, then data locality ---------------------------


def _three_sites(**replicas):
    t2s = [site("CLOUDA_T2_1"), site("CLOUDA_T2_2"), site("CLOUDA_T2_3")]
    return snap(site("CLOUDA_T1", status="offline"), *t2s,
                stats={"CLOUDA_T2_1": SiteStats(activated=10), "CLOUDA_T2_2": SiteStats(activated=15),
                       "CLOUDA_T2_3": SiteStats(activated=18)},
                replicas=replicas)  # fmt: skip


def test_of_the_two_best_the_one_with_most_inputs_wins():
    s = _three_sites(g1={"CLOUDA_T2_2_DATADISK", "CLOUDA_T2_3_DATADISK"}, g2={"CLOUDA_T2_3_DATADISK"})
    a = one(s, inputs=("g1", "g2"))
    assert a.site == "CLOUDA_T2_2"  # T2_3 holds both but is third; T2_2 holds one, T2_1 none
    assert a.reason.startswith("CLOUDA_T2_2 (winv 15.00, 1/2 inputs); weights: CLOUDA_T2_1 10.00")


def test_without_inputs_the_smallest_weight_wins():
    assert one(_three_sites()).site == "CLOUDA_T2_1"


def test_a_candidate_above_twice_the_minimum_is_dropped():
    s = snap(site("CLOUDA_T1", status="offline"), site("CLOUDA_T2_1"), site("CLOUDA_T2_2"),
             stats={"CLOUDA_T2_1": SiteStats(activated=10), "CLOUDA_T2_2": SiteStats(activated=25)},
             replicas={"g1": {"CLOUDA_T2_2_DATADISK"}})  # fmt: skip
    assert one(s, inputs=("g1",)).site == "CLOUDA_T2_1"  # 25 > 2 × 10: its data does not count
    s = dataclasses.replace(
        s, stats={"CLOUDA_T2_1": SiteStats(activated=10), "CLOUDA_T2_2": SiteStats(activated=20)}
    )
    assert one(s, inputs=("g1",)).site == "CLOUDA_T2_2"


def test_ties_are_broken_by_site_name_and_the_result_is_deterministic():
    s = snap(site("CLOUDA_T1", status="offline"), site("CLOUDA_T2_2"), site("CLOUDA_T2_1"))
    jobs = [job(i, prodDBlock=f"ds{i % 7}", inputs=(f"g{i}",)) for i in range(100)]
    first = broker.schedule(jobs, s)
    shuffled = jobs[:]
    random.Random(1).shuffle(shuffled)
    again = {a.PandaID: a for a in broker.schedule(shuffled, s)}
    assert [again[a.PandaID] for a in first] == first
    assert first[0].site == "CLOUDA_T2_1"


# --- bunches and the in-loop load -----------------------------------------------------------


def test_in_loop_load_spreads_jobs_over_two_equal_t2s():
    s = snap(site("CLOUDA_T1", status="offline"), site("CLOUDA_T2_1"), site("CLOUDA_T2_2"))
    jobs = [job(i, prodDBlock=f"ds{i // 10}") for i in range(40)]  # 4 bunches of 10
    out = broker.schedule(jobs, s)
    assert collections.Counter(a.site for a in out) == {"CLOUDA_T2_1": 20, "CLOUDA_T2_2": 20}
    assert [out[i].site for i in (0, 10, 20, 30)] == [
        "CLOUDA_T2_1",
        "CLOUDA_T2_2",
        "CLOUDA_T2_1",
        "CLOUDA_T2_2",
    ]
    one_block = broker.schedule([job(i, prodDBlock="ds") for i in range(40)], s)  # bunches of 21 + 19
    assert collections.Counter(a.site for a in one_block) == {"CLOUDA_T2_1": 21, "CLOUDA_T2_2": 19}


def _bunch_sizes(assignments):
    return [n for _, n in sorted(collections.Counter(a.bunch for a in assignments).items())]


def test_a_bunch_is_closed_after_more_than_20_jobs():
    out = broker.schedule([job(i, prodDBlock="ds") for i in range(50)], snap(site("CLOUDA_T1")))
    assert _bunch_sizes(out) == [21, 21, 8]
    assert [a.bunch for a in out[:22]] == [0] * 21 + [1]


def test_a_bunch_is_closed_at_20_distinct_input_files():
    jobs = [job(i, prodDBlock="ds", inputs=(f"a{i}", f"b{i}", f"c{i}")) for i in range(20)]
    assert _bunch_sizes(broker.schedule(jobs, snap(site("CLOUDA_T1")))) == [7, 7, 6]  # 21 files after 7 jobs
    shared = [job(i, prodDBlock="ds", inputs=("a", "b")) for i in range(20)]  # distinct files only
    assert _bunch_sizes(broker.schedule(shared, snap(site("CLOUDA_T1")))) == [20]


@pytest.mark.parametrize("field", ["prodDBlock", "AtlasRelease", "cmtConfig", "cloud"])
def test_a_bunch_is_closed_when_a_key_field_changes(field):
    s = snap(site("CLOUDA_T1"), site("CLOUDB_T1", cloud="CLOUDB"))
    values = {"prodDBlock": ("ds1", "ds2"), "AtlasRelease": ("Atlas-1", "Atlas-2"),
              "cmtConfig": ("c1", "c2"), "cloud": ("CLOUDA", "CLOUDB")}[field]  # fmt: skip
    jobs = [job(i, **{field: values[i % 2]}) for i in range(6)]
    out = broker.schedule(jobs, s)
    assert _bunch_sizes(out) == [3, 3]
    assert {a.bunch for a in out[0::2]} != {a.bunch for a in out[1::2]}


def test_preassigned_jobs_keep_their_site_and_count_into_the_load():
    s = snap(site("CLOUDA_T1", status="offline"), site("CLOUDA_T2_1"), site("CLOUDA_T2_2"))
    jobs = (
        [job(1)]
        + [job(i, computingSite="CLOUDA_T2_1") for i in range(2, 7)]
        + [job(7, computingSite="ELSEWHERE")]
    )
    out = broker.schedule(jobs, s)
    assert [a.PandaID for a in out] == list(range(1, 8))  # input order
    assert [(a.site, a.reason) for a in out[1:]] == [("CLOUDA_T2_1", "preassigned")] * 5 + [
        ("ELSEWHERE", "preassigned")
    ]
    assert out[0].site == "CLOUDA_T2_2"  # T2_1 already has the 5 preassigned jobs
    assert "CLOUDA_T2_1 5.00" in out[0].reason


def test_production_job_without_cloud_goes_where_the_t1_has_its_inputs():
    s = snap(site("CLOUDA_T1"), site("CLOUDB_T1", cloud="CLOUDB"),
             replicas={"g1": {"CLOUDB_T1_DATADISK"}, "g2": {"CLOUDB_T1_DATADISK", "CLOUDA_T1_DATADISK"}})  # fmt: skip
    a = one(s, cloud=None, inputs=("g1", "g2"))
    assert (a.site, a.cloud) == ("CLOUDB_T1", "CLOUDB")
    assert one(s, cloud=None).cloud == "CLOUDA"  # no inputs anywhere: first cloud by name


# --- analysis -------------------------------------------------------------------------------


def test_analysis_jobs_go_only_where_all_their_input_is():
    s = snap(site("CLOUDA_T1"), site("ANALY_A"), site("ANALY_B", cloud="CLOUDB"), site("ANALY_C"),
             replicas={"g1": {"ANALY_A_DATADISK", "ANALY_B_DATADISK"}, "g2": {"ANALY_B_DATADISK"}},
             stats={"ANALY_B": SiteStats(activated=50)})  # fmt: skip
    a = one(s, label="user", cloud=None, inputs=("g1", "g2"))
    assert a.site == "ANALY_B"
    assert "ANALY_A does not hold the input" in a.reason
    assert "ANALY_C does not hold the input" in a.reason
    assert "CLOUDA_T1" not in a.reason  # production sites are no candidates
    nowhere = one(s, label="panda", cloud="CLOUDA", inputs=("g1", "g2"))
    assert (nowhere.site, nowhere.error_code) == (None, 100)  # no transfer, no T1 fallback
    assert (
        nowhere.error_diag
        == "no site can take the job: ANALY_A does not hold the input; ANALY_C does not hold the input"
    )


def test_analysis_jobs_without_input_take_the_least_loaded_analysis_site():
    s = snap(
        site("CLOUDA_T1"),
        site("ANALY_A"),
        site("ANALY_B", cloud="CLOUDB"),
        stats={"ANALY_A": SiteStats(assigned=3)},
    )
    assert one(s, label="user", cloud=None).site == "ANALY_B"
    assert one(s, label="user").site == "ANALY_A"  # its cloud only


# --- nothing passes -------------------------------------------------------------------------


def test_error_100_when_no_site_has_the_release():
    s = snap(
        site("CLOUDA_T1", releases=("14.2.20",)), site("CLOUDA_T2_1", releases=("14.2.20",), status="offline")
    )
    jobs = [job(1, AtlasRelease="Atlas-15.0.0", cmtConfig="i686-slc4-gcc34-opt"),
            job(2, AtlasRelease="Atlas-15.0.0", cmtConfig="i686-slc4-gcc34-opt", label="test")]  # fmt: skip
    for a in broker.schedule(jobs, s):
        assert (a.site, a.error_code) == (None, 100)
        assert a.error_diag == "Atlas-15.0.0/i686-slc4-gcc34-opt not found in this cloud (CLOUDA)"
        assert "CLOUDA_T1 release 15.0.0 not installed" in a.reason
        assert "CLOUDA_T2_1 offline" in a.reason


def test_t1_fallback_only_when_the_t1_failed_load_filters():
    pilots = {"CLOUDA_T2_2": PilotStats(1, 0)}
    s = snap(site("CLOUDA_T1"), site("CLOUDA_T2_1", status="offline"), site("CLOUDA_T2_2", memory=1000),
             pilots=pilots)  # fmt: skip
    a = one(s, minRamCount=2000)
    assert a.site == "CLOUDA_T1"
    assert a.reason == ("CLOUDA_T1 (T1 fallback); skipped: CLOUDA_T1 no pilots in 3 h, CLOUDA_T2_1 offline, "
                        "CLOUDA_T2_2 memory 1000<2000")  # fmt: skip
    offline_t1 = dataclasses.replace(s, sites={**s.sites, "CLOUDA_T1": site("CLOUDA_T1", status="offline")})
    assert one(offline_t1, minRamCount=2000).error_code == 100


def test_no_site_in_an_unknown_cloud():
    a = one(snap(site("CLOUDA_T1")), cloud="NOWHERE")
    assert (a.site, a.error_code, a.error_diag) == (None, 100, "no production site in cloud NOWHERE")


def test_logged_reasons_for_a_job_no_site_can_take(caplog):
    s = snap(site("CLOUDA_T1", status="offline"), site("CLOUDA_T2_1", memory=2000), site("CLOUDA_T2_2", space=100),
             site("CLOUDA_T2_3", status="brokeroff"))  # fmt: skip
    out = broker.schedule([job(4242, minRamCount=3000)], s)
    with caplog.at_level(logging.INFO, logger="panda.brokerage"):
        broker.log_decisions(out)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("PandaID=4242 no site bunch=0 error=100 ")
    for expected in ("CLOUDA_T1 offline", "CLOUDA_T2_1 memory 2000<3000", "CLOUDA_T2_2 space 100<200 GB",
                     "CLOUDA_T2_3 brokeroff"):  # fmt: skip
        assert expected in message
    assert out[0].error_diag.startswith("no site can take the job: CLOUDA_T1 offline; CLOUDA_T2_1 memory")


def test_logged_decision_names_the_site(caplog):
    out = broker.schedule([job(7)], snap(site("CLOUDA_T1")))
    with caplog.at_level(logging.INFO, logger="panda.brokerage"):
        broker.log_decisions(out)
    assert (
        caplog.records[0].getMessage()
        == "PandaID=7 site=CLOUDA_T1 bunch=0 CLOUDA_T1 (winv 0.00); weights: CLOUDA_T1 0.00"
    )


def test_one_assignment_per_job_even_with_duplicate_ids():
    out = broker.schedule([job(1), job(1)], snap(site("CLOUDA_T1")))
    assert [a.site for a in out] == ["CLOUDA_T1", "CLOUDA_T1"]
    assert broker.schedule([], snap()) == []
