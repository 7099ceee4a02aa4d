"""The classic PanDA broker (S08 `brokerage/broker.py:schedule`, S10 refinements): pure.

`schedule(jobs, snapshot)` returns one `Assignment` per job, in input order. No I/O, no clock,
no randomness: ties are broken by site name, so the same input gives the same answer.

1. Jobs are sorted by (pre-assigned computingSite, cloud, prodSourceLabel, prodDBlock,
   AtlasRelease, cmtConfig, PandaID) and cut into bunches (S08 nJob/nFile): a new bunch starts
   when one of those fields changes, when the bunch already has more than 20 jobs, or when it
   has 20 or more distinct input files. Every job of a bunch goes to the same site. Pre-assigned
   jobs sort first, keep their site ("preassigned") and count into the load seen by the others;
   prodSourceLabel splits bunches so analysis and production jobs (brokered differently) never
   share one.
2. Candidates: production jobs → the production sites of the job's cloud and the cloud's T1; a
   production job without a cloud gets the online cloud whose T1 RSE holds most of its input
   files (ties: cloud name) — a simplified S08 TaskAssigner without the space/RW/mcshare rules.
   Analysis jobs (user/panda) → the analysis sites of the job's cloud, or of every cloud.
3. Each candidate passes the FILTERS (first failure is its reason) or is skipped.
4. Weight (smaller is better): winv = (activated+assigned) / nPilots / nJobsPerNode; the cloud's
   T1 gets winv /= cloud weight for bunches with more than 4 inputs per job. The 2 best stay,
   minus any with winv > 2 × min; with inputs, the one holding most of them wins.
5. No candidate passed: error 100 (brokerageErrorCode). When the release/cmtconfig is nowhere in
   the candidate list the diag is the classic "<rel>/<cmtconfig> not found in this cloud".
   Otherwise production falls back to the cloud's T1 (classic) but only when the T1 failed
   nothing but the load filters (space, pilots): a job sent to an offline, release-less or too
   small T1 would never run, so it fails instead with every site's reason in the diag.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence

from panda_server.brokerage.model import (
    Assignment,
    BrokerJob,
    PilotStats,
    SiteInfo,
    SiteStats,
    Snapshot,
)

N_JOB = 20  # S08 nJob: a bunch with more jobs than this is closed
N_FILE = 20  # S08 nFile: a bunch with this many distinct input files is closed
N_MIN_SITES = 2  # S08 nMinSites: best candidates kept before data locality decides
DISK_THRESHOLD_GB = 200  # S10 diskThreshold for T2s
SPACE_PER_JOB_GB = 0.25  # S10: space a queued or running job is expected to take
MANY_INPUTS_PER_JOB = 4  # S08: above this, the cloud's T1 gets its weight bonus
DEFAULT_T1_WEIGHT = 2.0
TEST_LABELS = frozenset({"test", "prod_test", "ptest"})  # may use sites in status "test"
BROKERAGE_ERROR = 100  # brokerageErrorCode: no site for the job
DIAG_LIMIT = 250  # brokerageErrorDiag column size (protocol.jobspec.DIAG_LIMITS)
PRODUCTION_TYPES = frozenset({"production", "unified"})
ANALYSIS_TYPES = frozenset({"analysis", "unified"})


@dataclasses.dataclass(frozen=True)
class Need:
    """What a bunch asks of a site (from its jobs; memory and disk: the largest job's)."""

    label: str
    analysis: bool
    cloud: str | None
    release: str  # AtlasRelease as given ("" = none)
    cmtconfig: str  # "" = none
    memory: int
    disk: int
    files: tuple[str, ...]  # distinct input GUIDs of the bunch, in job order
    n_jobs: int
    inputs_per_job: float


class Load:
    """The job counts the broker sees: the snapshot's plus what this run has assigned."""

    def __init__(self, snap: Snapshot) -> None:
        self._stats = snap.stats
        self._added: dict[str, int] = {}

    def get(self, site: str) -> SiteStats:
        base = self._stats.get(site) or SiteStats()
        extra = self._added.get(site, 0)
        return dataclasses.replace(base, assigned=base.assigned + extra) if extra else base

    def add(self, site: str, n: int) -> None:
        self._added[site] = self._added.get(site, 0) + n


# --- filters: (site, the bunch's need, snapshot, load) → why the site is skipped, or None ------

Filter = Callable[[SiteInfo, Need, Snapshot, Load], str | None]


def _test_name(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if site.siteid.endswith(("test", "Test")) or site.siteid.startswith(("test", "Test")):
        return "test site (name)"
    return None


def _status(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if site.status in ("offline", "brokeroff"):
        return site.status
    if site.status == "test" and need.label not in TEST_LABELS:
        return "test (test jobs only)"
    return None


def job_releases(release: str) -> list[str]:
    """'Atlas-14.2.20\\nAtlas-14.2.21' → ['14.2.20', '14.2.21'] (S08 _checkRelease)."""
    lines = [r.strip() for r in release.splitlines() if r.strip() not in ("", "NULL")]
    return [r.removeprefix("Atlas-") for r in lines]


def _release(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if not site.releases:
        return None
    missing = [r for r in job_releases(need.release) if r not in site.releases]
    return f"release {' '.join(missing)} not installed" if missing else None


def _cmtconfig(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if need.cmtconfig and site.cmtconfigs and need.cmtconfig not in site.cmtconfigs:
        return f"cmtconfig {need.cmtconfig} not installed"
    return None


def _memory(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if site.memory and need.memory and site.memory < need.memory:
        return f"memory {site.memory}<{need.memory}"
    return None


def _disk(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if site.maxinputsize and need.disk and site.maxinputsize < need.disk:
        return f"maxinputsize {site.maxinputsize}<{need.disk}"
    return None


def _space(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if site.tier == "T1" or not site.space:
        return None
    s = load.get(site.siteid)
    left = site.space - SPACE_PER_JOB_GB * (s.assigned + s.activated + s.running)
    return f"space {left:g}<{DISK_THRESHOLD_GB} GB" if left < DISK_THRESHOLD_GB else None


def _pilots(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if not snap.pilots:
        return None  # no sitedata at all: the rule is off (S08 nWNmap == {})
    p = snap.pilots.get(site.siteid) or PilotStats()
    return "no pilots in 3 h" if p.getJob + p.updateJob == 0 else None


def _input_here(site: SiteInfo, need: Need, snap: Snapshot, load: Load) -> str | None:
    if need.analysis and need.files and _held(site, need.files, snap) < len(need.files):
        return "does not hold the input"  # analysis jobs never trigger transfers
    return None


FILTERS: tuple[tuple[str, Filter], ...] = (
    ("name", _test_name), ("status", _status), ("release", _release),
    ("cmtconfig", _cmtconfig), ("memory", _memory), ("disk", _disk), ("space", _space),
    ("pilots", _pilots), ("data", _input_here),
)  # fmt: skip
SOFT = frozenset({"space", "pilots"})  # load filters: the T1 fallback may ignore them


def _failure(name: str, need: Need, snap: Snapshot, load: Load) -> tuple[str, str] | None:
    site = snap.sites.get(name)
    if site is None:
        return "unknown", "unknown site"
    for kind, check in FILTERS:
        why = check(site, need, snap, load)
        if why is not None:
            return kind, why
    return None


def _has_software(name: str, need: Need, snap: Snapshot, load: Load) -> bool:
    site = snap.sites[name]
    return _release(site, need, snap, load) is None and _cmtconfig(site, need, snap, load) is None


def _held(site: SiteInfo, files: Sequence[str], snap: Snapshot) -> int:
    return sum(1 for guid in files if site.ddm in snap.replicas.get(guid, ()))


# --- weight -------------------------------------------------------------------------------


def winv(name: str, need: Need, snap: Snapshot, load: Load) -> float:
    """S08 inverse weight: (activated+assigned) / nPilots / nJobsPerNode, T1 bonus for many inputs."""
    s, p = load.get(name), snap.pilots.get(name) or PilotStats()
    n_pilots = p.getJob + p.updateJob
    per_node = s.running / p.updateJob if s.running and p.updateJob else 1.0
    value = (s.activated + s.assigned) / max(n_pilots, 1) / per_node
    cloud = snap.clouds.get(need.cloud or "")
    if not need.analysis and cloud and name == cloud.tier1 and need.inputs_per_job > MANY_INPUTS_PER_JOB:
        value /= cloud.weight or DEFAULT_T1_WEIGHT
    return value


def _choose(passed: list[str], need: Need, snap: Snapshot, load: Load) -> tuple[str, str]:
    """The chosen site and the reason's head: the 2 best, none above 2×min, then data locality."""
    weights = {name: winv(name, need, snap, load) for name in passed}
    best = sorted(passed, key=lambda n: (weights[n], n))[:N_MIN_SITES]
    kept = [n for n in best if weights[n] <= 2 * weights[best[0]]]
    held = {n: _held(snap.sites[n], need.files, snap) for n in kept} if need.files else {}
    chosen = min(kept, key=lambda n: (-held.get(n, 0), weights[n], n))
    head = f"{chosen} (winv {weights[chosen]:.2f}"
    head += f", {held[chosen]}/{len(need.files)} inputs)" if need.files else ")"
    listed = ", ".join(f"{n} {weights[n]:.2f}" for n in sorted(passed, key=lambda n: (weights[n], n)))
    return chosen, f"{head}; weights: {listed}"


# --- bunches ------------------------------------------------------------------------------


@dataclasses.dataclass
class Bunch:
    number: int
    key: tuple[str, ...]
    members: list[tuple[int, BrokerJob]]  # (index in the input, job)
    files: dict[str, None]  # distinct input GUIDs, ordered


def preset_site(job: BrokerJob) -> str | None:
    return job.computingSite if job.computingSite not in (None, "", "NULL") else None


def _cloud_of(job: BrokerJob, snap: Snapshot) -> str | None:
    """The job's cloud; a production job without one gets the cloud whose T1 has most inputs."""
    cloud = job.cloud if job.cloud not in (None, "", "NULL") else None
    if cloud or job.is_analysis or preset_site(job):
        return cloud
    best: tuple[int, str] | None = None
    for name in sorted(snap.clouds):
        info, t1 = snap.clouds[name], snap.sites.get(snap.clouds[name].tier1)
        if info.status != "online" or t1 is None:
            continue
        n = _held(t1, job.inputs, snap)
        if best is None or n > best[0]:
            best = (n, name)
    return best[1] if best else None


def bunches(jobs: Sequence[BrokerJob], snap: Snapshot) -> Iterator[Bunch]:
    """S08 bunching: sort, then cut on a key change, >N_JOB jobs or >=N_FILE distinct inputs."""
    keyed = []
    for index, job in enumerate(jobs):
        key = (preset_site(job) or "", _cloud_of(job, snap) or "", job.prodSourceLabel or "",
               job.prodDBlock or "", job.AtlasRelease or "", job.cmtConfig or "")  # fmt: skip
        keyed.append(((not key[0], *key, job.PandaID, index), key, index, job))
    keyed.sort(key=lambda k: k[0])
    current: Bunch | None = None
    number = 0
    for _, key, index, job in keyed:
        if (
            current is None
            or current.key != key
            or len(current.members) > N_JOB
            or len(current.files) >= N_FILE
        ):
            if current is not None:
                yield current
                number += 1
            current = Bunch(number, key, [], {})
        current.members.append((index, job))
        current.files.update(dict.fromkeys(job.inputs))
    if current is not None:
        yield current


def _need(bunch: Bunch) -> Need:
    jobs = [job for _, job in bunch.members]
    first = jobs[0]
    cmtconfig = first.cmtConfig if first.cmtConfig not in (None, "NULL") else ""
    return Need(
        label=first.prodSourceLabel or "", analysis=first.is_analysis, cloud=bunch.key[1] or None,
        release=first.AtlasRelease or "", cmtconfig=cmtconfig or "",
        memory=max(j.minRamCount or 0 for j in jobs), disk=max(j.maxDiskCount or 0 for j in jobs),
        files=tuple(bunch.files), n_jobs=len(jobs),
        inputs_per_job=sum(len(j.inputs) for j in jobs) / len(jobs),
    )  # fmt: skip


def candidates(need: Need, snap: Snapshot) -> list[str]:
    """Sites to scan: the cloud's production sites and its T1, or the analysis sites."""
    if need.analysis:
        in_cloud = {n for n, s in snap.sites.items() if need.cloud is None or s.cloud == need.cloud}
        return sorted(n for n in in_cloud if snap.sites[n].type in ANALYSIS_TYPES)
    names = {n for n, s in snap.sites.items() if s.type in PRODUCTION_TYPES and s.cloud == need.cloud}
    cloud = snap.clouds.get(need.cloud or "")
    if cloud is not None:
        names.add(cloud.tier1)
    return sorted(names)


# --- one bunch ----------------------------------------------------------------------------


def _assign(bunch: Bunch, site: str | None, reason: str, snap: Snapshot, cloud: str | None = None,
            diag: str | None = None) -> list[tuple[int, Assignment]]:  # fmt: skip
    info = snap.sites.get(site or "")
    cloud = info.cloud if info is not None else cloud
    code = BROKERAGE_ERROR if site is None else None
    return [(i, Assignment(PandaID=j.PandaID, site=site, bunch=bunch.number, reason=reason, error_code=code,
                           error_diag=diag, cloud=cloud)) for i, j in bunch.members]  # fmt: skip


def _skipped_text(skipped: dict[str, tuple[str, str]]) -> str:
    return ", ".join(f"{name} {why}" for name, (_, why) in skipped.items())


def _software_missing(need: Need, names: list[str], snap: Snapshot, load: Load) -> str | None:
    """S08 "<rel>/<cmtconfig> not found in this cloud" when no known candidate has them."""
    known = [n for n in names if n in snap.sites]
    if not known or any(_has_software(n, need, snap, load) for n in known):
        return None
    text = f"{need.release or 'NULL'}/{need.cmtconfig or 'NULL'}".replace("\n", " ")
    return f"{text} not found in this cloud ({need.cloud})" if need.cloud else f"{text} not found at any site"


def _t1_fallback(need: Need, skipped: dict[str, tuple[str, str]], snap: Snapshot) -> str | None:
    """The cloud's T1, if only a load filter (space, pilots) refused it; never for analysis."""
    cloud = snap.clouds.get(need.cloud or "")
    if need.analysis or cloud is None or cloud.tier1 not in skipped:
        return None
    return cloud.tier1 if skipped[cloud.tier1][0] in SOFT else None


def _no_site(bunch: Bunch, need: Need, names: list[str], skipped: dict[str, tuple[str, str]],
             snap: Snapshot, load: Load) -> list[tuple[int, Assignment]]:  # fmt: skip
    """Nothing passed: the T1 when only load filters refused it, else error 100."""
    skipped_text = _skipped_text(skipped)
    if not names:
        where = f"cloud {need.cloud}" if need.cloud else "any cloud"
        diag = f"no {'analysis' if need.analysis else 'production'} site in {where}"
        return _assign(bunch, None, f"no site: {diag}", snap, need.cloud, diag)
    missing = _software_missing(need, names, snap, load)
    if missing:
        reason = f"no site: {missing}; skipped: {skipped_text}"
        return _assign(bunch, None, reason, snap, need.cloud, missing[:DIAG_LIMIT])
    t1 = _t1_fallback(need, skipped, snap)
    if t1 is not None:
        load.add(t1, need.n_jobs)
        return _assign(bunch, t1, f"{t1} (T1 fallback); skipped: {skipped_text}", snap)
    diag = "no site can take the job: " + "; ".join(f"{n} {why}" for n, (_, why) in skipped.items())
    return _assign(bunch, None, f"no site; skipped: {skipped_text}", snap, need.cloud, diag[:DIAG_LIMIT])


def broker_bunch(bunch: Bunch, snap: Snapshot, load: Load) -> list[tuple[int, Assignment]]:
    """One bunch → one site (or none), with the reason shared by its jobs."""
    site = preset_site(bunch.members[0][1])
    if site:
        load.add(site, len(bunch.members))
        return _assign(bunch, site, "preassigned", snap, bunch.members[0][1].cloud)
    need = _need(bunch)
    names = candidates(need, snap)
    skipped: dict[str, tuple[str, str]] = {}
    passed = []
    for name in names:
        failure = _failure(name, need, snap, load)
        if failure is None:
            passed.append(name)
        else:
            skipped[name] = failure
    if not passed:
        return _no_site(bunch, need, names, skipped, snap, load)
    chosen, head = _choose(passed, need, snap, load)
    load.add(chosen, need.n_jobs)
    reason = f"{head}; skipped: {_skipped_text(skipped)}" if skipped else head
    return _assign(bunch, chosen, reason, snap)


def schedule(jobs: Sequence[BrokerJob], snap: Snapshot) -> list[Assignment]:
    """Broker `jobs` against `snap`: one Assignment per job, in input order (pure, deterministic)."""
    load = Load(snap)
    out: list[Assignment | None] = [None] * len(jobs)
    for bunch in bunches(jobs, snap):
        for index, assignment in broker_bunch(bunch, snap, load):
            out[index] = assignment
    return [a for a in out if a is not None]


def log_decisions(assignments: Sequence[Assignment], logger: logging.Logger | None = None) -> None:
    """One log line per job: PandaID, site (or the error), bunch and the reason."""
    logger = logger or logging.getLogger("panda.brokerage")
    for a in assignments:
        if a.site is not None:
            logger.info("PandaID=%s site=%s bunch=%d %s", a.PandaID, a.site, a.bunch, a.reason)
        else:
            logger.warning(
                "PandaID=%s no site bunch=%d error=%s %s", a.PandaID, a.bunch, a.error_code, a.reason
            )
