"""The PanDA DB as SQLAlchemy Core tables: lower-case table names, PanDA's column spelling.

The four job tables share one column list (the JobSpec attributes, except jobParameters and
metadata, which live in jobparamstable and metatable as in the modern PanDA DB). Migrations in
migrations/ create exactly this; tests/db/test_schema.py compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
    func,
)  # fmt: skip
from sqlalchemy.dialects.postgresql import JSONB

from panda_server.protocol.jobspec import (
    DIAG_LIMITS,
    FILE_ATTRIBUTES,
    FILE_INT_ATTRIBUTES,
    JOB_ATTRIBUTES,
    JOB_DATETIME_ATTRIBUTES,
    JOB_FLOAT_ATTRIBUTES,
    JOB_INT_ATTRIBUTES,
)  # fmt: skip
from panda_server.protocol.states import JOB_TABLES

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    }
)

PANDAID_SEQ = Sequence("jobsdefined4_pandaid_seq", metadata=metadata, start=1000)
ROWID_SEQ = Sequence("filestable4_row_id_seq", metadata=metadata, start=1)
SUBID_SEQ = Sequence("subcounter_subid_seq", metadata=metadata, start=1, maxvalue=9999999, cycle=True)

# Stored in their own tables, not in the job rows.
SEPARATE_JOB_ATTRIBUTES = frozenset({"jobParameters", "metadata"})
JOB_COLUMNS: tuple[str, ...] = tuple(a for a in JOB_ATTRIBUTES if a not in SEPARATE_JOB_ATTRIBUTES)


def _job_column_type(name: str):
    if name in JOB_DATETIME_ATTRIBUTES:
        return DateTime()
    if name in JOB_INT_ATTRIBUTES:
        return BigInteger()
    if name in JOB_FLOAT_ATTRIBUTES:
        return Float()
    if name in DIAG_LIMITS:
        return String(DIAG_LIMITS[name])
    return Text()


def _job_table(name: str) -> Table:
    columns = [Column(a, _job_column_type(a), nullable=(a != "PandaID")) for a in JOB_COLUMNS]
    return Table(name, metadata, *columns, PrimaryKeyConstraint("PandaID"))


jobsdefined4 = _job_table("jobsdefined4")
jobswaiting4 = _job_table("jobswaiting4")
jobsactive4 = _job_table("jobsactive4")
jobsarchived4 = _job_table("jobsarchived4")
JOB_TABLE = {t.name: t for t in (jobsdefined4, jobswaiting4, jobsactive4, jobsarchived4)}
assert tuple(JOB_TABLE) == JOB_TABLES

# The dispatcher's claim walks the activated jobs of one site in dispatch order (S08 getJobs):
# a partial index in exactly that order keeps getJob constant-time however deep the queue is.
Index(
    "ix_jobsactive4_claim",
    jobsactive4.c.computingSite,
    jobsactive4.c.currentPriority.desc().nulls_last(),
    jobsactive4.c.PandaID,
    postgresql_where=jobsactive4.c.jobStatus == "activated",
)
Index(None, jobsactive4.c.computingSite, jobsactive4.c.jobStatus)
Index(None, jobsactive4.c.jobStatus, jobsactive4.c.modificationTime)
Index(None, jobsdefined4.c.jobStatus)
for _t in JOB_TABLE.values():
    Index(None, _t.c.prodUserID, _t.c.jobDefinitionID)
Index(None, jobsarchived4.c.modificationTime)

filestable4 = Table(
    "filestable4",
    metadata,
    *[
        Column(
            a, BigInteger() if a in FILE_INT_ATTRIBUTES else Text(), nullable=(a not in ("rowID", "PandaID"))
        )
        for a in FILE_ATTRIBUTES
    ],
    Column("modificationTime", DateTime()),
    PrimaryKeyConstraint("rowID"),
)
Index(None, filestable4.c.PandaID)
Index(None, filestable4.c.dispatchDBlock)
Index(None, filestable4.c.destinationDBlock)

metatable = Table(
    "metatable", metadata, Column("PandaID", BigInteger(), primary_key=True),
    Column("modificationTime", DateTime()), Column("metaData", Text()),
)  # fmt: skip
# jobSignature: the server's signature of the job specification (protocol/signing.py), made at
# submission and checked by our pilot; NULL for jobs stored before signing existed.
jobparamstable = Table(
    "jobparamstable", metadata, Column("PandaID", BigInteger(), primary_key=True),
    Column("modificationTime", DateTime()), Column("jobParameters", Text()), Column("jobSignature", Text()),
)  # fmt: skip

# The pilot's final file report, kept for the Adder (S25 job_output_report).
job_output_report = Table(
    "job_output_report",
    metadata,
    Column("PandaID", BigInteger(), primary_key=True),
    Column("prodSourceLabel", Text()),
    Column("jobStatus", Text(), nullable=False),  # what the pilot said: finished or failed
    Column("attemptNr", Integer()),
    Column("data", Text()),
    Column("timeStamp", DateTime(), nullable=False),
    Column("lockedBy", Text()),
    Column("lockedTime", DateTime()),
)

datasets = Table(
    "datasets",
    metadata,
    Column("vuid", Text(), primary_key=True),
    Column("name", Text(), nullable=False, unique=True),
    Column("version", Text()),
    Column("type", Text()),  # input, output, dispatch
    Column("status", Text()),
    Column("numberfiles", Integer()),
    Column("currentfiles", Integer()),
    Column("creationdate", DateTime()),
    Column("modificationdate", DateTime()),
    Column("MoverID", BigInteger()),
    Column("transferStatus", Integer()),
    Column("subtype", Text()),
)

# One row per PanDA queue: the classic columns the server filters on, plus the whole queue
# definition (schedconfig/queues/<nickname>.json) as JSON, as modern schedconfig_json keeps it.
schedconfig = Table(
    "schedconfig",
    metadata,
    Column("nickname", Text(), primary_key=True),
    Column("siteid", Text(), nullable=False),
    Column("cloud", Text(), nullable=False),
    Column("status", Text(), nullable=False),
    Column("type", Text(), nullable=False),
    Column("tier", Text()),
    Column("memory", Integer()),
    Column("maxtime", Integer()),
    Column("space", Integer()),
    Column("retry", Text()),
    Column("data", JSONB(), nullable=False),
    Column("lastmod", DateTime(), nullable=False),
)
Index(None, schedconfig.c.siteid)

cloudconfig = Table(
    "cloudconfig",
    metadata,
    Column("name", Text(), primary_key=True),
    Column("description", Text()),
    Column("tier1", Text(), nullable=False),
    Column("tier1SE", Text()),
    Column("relocation", Text()),
    Column("weight", Integer()),
    Column("server", Text()),
    Column("status", Text(), nullable=False),
    Column("transtimelo", Integer()),
    Column("transtimehi", Integer()),
    Column("waittime", Integer()),
    Column("cloudcomment", Text()),
    Column("space", Integer()),
    Column("moduser", Text()),
    Column("modtime", DateTime()),
    Column("validation", Text()),
    Column("mcshare", Integer()),
    Column("countries", Text()),
    Column("fasttrack", Text()),
)

# Pilot activity per site and time window, read by the broker (S08 SiteData).
sitedata = Table(
    "sitedata",
    metadata,
    Column("site", Text(), nullable=False),
    Column("flag", Text(), nullable=False),
    Column("hours", Integer(), nullable=False),
    Column("getJob", Integer()),
    Column("updateJob", Integer()),
    Column("nwn", Integer()),
    Column("lastmod", DateTime()),
    PrimaryKeyConstraint("site", "flag", "hours"),
)

# Pilot requests per minute bin, summed into sitedata's windows (taskbuffer/sitedata.py).
sitedata_bins = Table(
    "sitedata_bins",
    metadata,
    Column("site", Text(), nullable=False),
    Column("flag", Text(), nullable=False),
    Column("bin", DateTime(), nullable=False),
    Column("getJob", Integer(), nullable=False, server_default="0"),
    Column("updateJob", Integer(), nullable=False, server_default="0"),
    PrimaryKeyConstraint("site", "flag", "bin"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("name", Text(), nullable=False),
    Column("dn", Text(), nullable=False, unique=True),
    Column("email", Text()),
    Column("jobid", BigInteger(), nullable=False, server_default="0"),  # per-user jobDefinitionID serial
    Column("status", Text()),  # 'disabled' blocks submission
    Column("lastmod", DateTime()),
    Column("gridpref", Text()),
)

cloudtasks = Table(
    "cloudtasks",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("taskname", Text()),
    Column("taskid", BigInteger(), unique=True),
    Column("cloud", Text()),
    Column("status", Text()),
    Column("tmod", DateTime()),
    Column("tenter", DateTime()),
)

pandalog = Table(
    "pandalog",
    metadata,
    Column("id", BigInteger(), primary_key=True, autoincrement=True),
    Column("bintime", DateTime(), nullable=False),
    Column("name", Text()),
    Column("module", Text()),
    Column("loguser", Text()),
    Column("type", Text()),
    Column("pid", BigInteger()),
    Column("loglevel", Integer()),
    Column("levelname", Text()),
    Column("time", Text()),
    Column("filename", Text()),
    Column("line", Integer()),
    Column("message", Text()),
)
Index(None, pandalog.c.type, pandalog.c.bintime)

# The pilot factory's tables (classic AutoPilot, autopilot/tracking.py, docs/autopilot.md).
PILOT_STATES = ("submitted", "queued", "running", "done", "failed", "lost")

# One row per pilot a factory submitted: tracking id, batch id, queue, state and its times, exit
# code, the log URL (GTAG, which the pilot sends as its pilotID) and the last job it ran.
pilotqueue = Table(
    "pilotqueue",
    metadata,
    Column("tpid", Text(), primary_key=True),
    Column("jobid", Text(), nullable=False),  # the batch system's id (Slurm job id, cluster.proc, pid)
    Column("factory", Text(), nullable=False),
    Column("nickname", Text(), nullable=False),
    Column("queueid", Text(), nullable=False),  # the PanDA site
    Column("system", Text(), nullable=False),  # the submitter
    Column("state", Text(), nullable=False),
    Column("url", Text(), nullable=False),
    Column("submithost", Text()),
    Column("user", Text()),
    Column("workernode", Text()),
    Column("pandaid", BigInteger()),
    Column("errcode", Integer()),  # the wrapper's exit code
    Column("errinfo", Text()),
    Column("tsubmit", DateTime(), nullable=False),
    Column("tstate", DateTime(), nullable=False),  # when state last changed
    Column("tcheck", DateTime()),  # when the batch system was last asked
    Column("tstart", DateTime()),
    Column("tend", DateTime()),
)
Index(None, pilotqueue.c.factory, pilotqueue.c.state)
Index(None, pilotqueue.c.nickname, pilotqueue.c.tsubmit)
# A pilot sends its log URL (GTAG) as pilotID "<url>|PR|<version>": the factory finds its jobs by it
for _t in (jobsactive4, jobsarchived4):
    Index(f"ix_{_t.name}_pilot", func.split_part(_t.c.pilotID, "|", 1))

# Factories (and later other services) with their heartbeat; doaction is the remote control.
servicelist = Table(
    "servicelist",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("name", Text(), nullable=False, unique=True),
    Column("type", Text(), nullable=False),
    Column("host", Text()),
    Column("pid", Integer()),
    Column("userid", Text()),
    Column("url", Text()),  # where its logs are served
    Column("config", Text()),  # its command line
    Column("cyclesec", Integer()),
    Column("status", Text(), nullable=False),  # running, stopped
    Column("message", Text()),  # what the last cycle did
    Column("doaction", Text()),  # an operator's request, e.g. stop
    Column("tstart", DateTime()),
    Column("tstop", DateTime()),
    Column("tcheck", DateTime()),  # the heartbeat
    Column("lastmod", DateTime()),
)

# Per factory and queue: the last cycle's pilot counts and decision.
schedinstance = Table(
    "schedinstance",
    metadata,
    Column("name", Text(), nullable=False),  # the factory
    Column("nickname", Text(), nullable=False),
    Column("pandasite", Text()),
    Column("nqueue", Integer()),  # pilots submitted by the last cycle
    Column("nqueued", Integer()),
    Column("nrunning", Integer()),
    Column("ndone", Integer()),
    Column("nfailed", Integer()),
    Column("naborted", Integer()),  # lost
    Column("njobs", Integer()),  # activated jobs the server reported
    Column("errinfo", Text()),  # the decision's reason
    Column("lastmod", DateTime()),
    PrimaryKeyConstraint("name", "nickname"),
)
