"""The condor submitter: what it renders, checked against reviewed golden files and HTCondor's own
parser (the htcondor2 / classad2 bindings); what it makes of condor_submit, condor_q and
condor_history output; the commands it runs.

No HTCondor daemon can run on this machine (reference/feasibility.md §3): there is no schedd, and
no condor_submit, condor_q, condor_history or condor_rm. So the samples under condor/ were NOT
recorded from a live schedd here. They are modelled on HTCondor's documented and source-level
output formats: condor_submit's "Submitting job(s)..." / "N job(s) submitted to cluster C." lines
and its "ERROR: Failed to connect to local queue manager" (src/condor_submit.V6/submit.cpp), and
the JSON ClassAd list of `condor_q -json` / `condor_history -json` as CondorClassAdListWriter
frames it ("[", ads separated by ",", "]"; each ad by ClassAdJsonUnParser, attributes in
case-insensitive order; nothing at all when no job matches). test_samples_are_htcondor_json_ad_lists
checks every ad with HTCondor's JSON ClassAd parser. The commands are run through an injected
runner that records argv and answers with these samples; the real runner is used only to show
what happens without HTCondor's tools.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from pathlib import Path

import classad2
import htcondor2
import pytest

from autopilot.submitters import commands
from autopilot.submitters.base import BatchCommandError, BatchState, BatchStatus, PilotBatch, SubmitError
from autopilot.submitters.commands import Completed
from autopilot.submitters.condor import (
    ATTRIBUTES,
    CondorSubmitter,
    parse_jobs_json,
    parse_submit_output,
    render,
)
from schedconfig.model import QueueSpec

DATA = Path(__file__).parent / "condor"
LOG_DIR = Path("/var/lib/autopilot/logs/2026-11-25/CLOUDA_T2_1")
NAME = "tp_submit01_4242_20261125-101500_7"
LOG_URL = "https://submit01.example.org:25880/2026-11-25/CLOUDA_T2_1"
ARGS = ("-q", "CLOUDA_T2", "-w", "https://panda.example.org:25443/server/panda", "--", "-u", "managed")
FACTORY_ENV = {"PANDA_JSID": "submit01-autopilot", "APFFID": "submit01-autopilot", "FACTORYQUEUE": "CLOUDA_T2",
               "FACTORYUSER": "autopilot", "X509_USER_PROXY": "/var/lib/autopilot/proxy/x509up_pilot",
               "X509_CERT_DIR": "/etc/grid-security/certificates", "PILOT_PYTHON": "python3"}  # fmt: skip
# the CE queue's environ as schedconfig holds it; the factory merges it into the batch's environment
CE_ENVIRON = "ATLAS_LOCAL_AREA=/cvmfs/atlas.cern.ch/repo/sw/local SITE_NOTE='CE \"ce01\": it'\"'\"'s new'"
CE_ENV = {"ATLAS_LOCAL_AREA": "/cvmfs/atlas.cern.ch/repo/sw/local", "SITE_NOTE": 'CE "ce01": it\'s new'}


def queue(**fields) -> QueueSpec:
    return QueueSpec(nickname="CLOUDA_T2", cloud="CLOUDA", siteid="CLOUDA_T2", system="condor", **fields)


def batch(q: QueueSpec, *, log_dir: Path = LOG_DIR, count: int = 3, **fields) -> PilotBatch:
    values = dict(queue=q, name=NAME, count=count, log_dir=log_dir, log_url=LOG_URL,
                  executable=Path("/usr/lib/autopilot/wrapper.sh"), arguments=ARGS, environment=FACTORY_ENV,
                  proxy=Path("/var/lib/autopilot/proxy/x509up_pilot"))  # fmt: skip
    return PilotBatch(**{**values, **fields})


def vanilla_batch(**fields) -> PilotBatch:
    return batch(queue(memory=2000), **fields)


def ce_batch(**fields) -> PilotBatch:
    q = queue(jobmanager="htcondor-ce", gatekeeper="ce01.example.org", localqueue="atlas", memory=4000,
              maxtime=172800, corecount=8, environ=CE_ENVIRON, jdladd='+voactivity = "production"')  # fmt: skip
    values = dict(arguments=(*ARGS, "--comment", "first day at ce01"), environment={**FACTORY_ENV, **CE_ENV})
    return batch(q, **{**values, **fields})


# ---- a reference reading of HTCondor's "new syntax" (condor_submit manual, arguments and
# environment): the bindings parse a description but do not split these strings, so this
# transcribes the manual's four rules and is itself checked against the manual's own examples.


def split_new_syntax(text: str) -> list[str]:
    assert text.startswith('"') and text.endswith('"'), text
    body, words, word, quoted, started, i = text[1:-1], [], [], False, False, 0
    while i < len(body):
        c, nxt = body[i], body[i + 1 : i + 2]
        if c == '"':
            assert nxt == '"', f"a lone double quote in {text!r}"
            word.append('"')
            started, i = True, i + 2
        elif c == "'" and quoted and nxt == "'":
            word.append("'")
            i += 2
        elif c == "'":
            quoted, started, i = not quoted, True, i + 1
        elif c in " \t" and not quoted:
            if started:
                words.append("".join(word))
            word, started, i = [], False, i + 1
        else:
            word.append(c)
            started, i = True, i + 1
    assert not quoted, f"unbalanced single quote in {text!r}"
    return [*words, "".join(word)] if started else words


def environment_of(text: str) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in split_new_syntax(text))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('"3 simple arguments"', ["3", "simple", "arguments"]),
        ("\"one 'two with spaces' 3\"", ["one", "two with spaces", "3"]),
        ("\"one \"\"two\"\" 'spacey ''quoted'' argument'\"", ["one", '"two"', "spacey 'quoted' argument"]),
        (
            "\"one=1 two=\"\"2\"\" three='spacey ''quoted'' value'\"",
            ["one=1", 'two="2"', "three=spacey 'quoted' value"],
        ),
    ],
)
def test_the_reference_reading_agrees_with_the_manual_examples(text, words):
    assert split_new_syntax(text) == words


# ---- the golden files


def test_vanilla_description_equals_the_reviewed_golden_file():
    assert render(vanilla_batch()).encode() == (DATA / "vanilla.sub").read_bytes()


def test_htcondor_ce_description_equals_the_reviewed_golden_file():
    assert dict(item.split("=", 1) for item in shlex.split(CE_ENVIRON)) == CE_ENV  # as the factory reads it
    assert render(ce_batch()).encode() == (DATA / "grid_ce.sub").read_bytes()


# ---- what HTCondor's parser makes of them


def parsed(b: PilotBatch) -> htcondor2.Submit:
    return htcondor2.Submit(render(b))


def expanded(sub: htcondor2.Submit, key: str, process: int) -> str:
    copy = htcondor2.Submit(dict(sub.items()))  # expand() resolves $(Process) from the object's own macros
    copy["Process"] = str(process)
    return copy.expand(key)


def classad_value(sub: htcondor2.Submit, key: str, process: int = 0):
    return classad2.ExprTree(expanded(sub, key, process)).eval()


@pytest.mark.parametrize("make", [vanilla_batch, ce_batch], ids=["vanilla", "htcondor-ce"])
def test_htcondor_reads_one_cluster_of_count_jobs_with_our_identity(make):
    b = make()
    sub = parsed(b)
    assert sub.getQArgs() == "3"
    assert sub["executable"] == "/usr/lib/autopilot/wrapper.sh"
    assert sub["x509userproxy"] == "/var/lib/autopilot/proxy/x509up_pilot"
    assert sub["log"] == f"{LOG_DIR}/{NAME}.log"
    assert sub["notification"] == "Never" and sub["stream_output"] == sub["stream_error"] == "False"
    assert split_new_syntax(sub["arguments"]) == list(b.arguments)
    assert classad_value(sub, "MY.MATCH_APF_QUEUE") == classad_value(sub, "MY.APF_QUEUE") == "CLOUDA_T2"
    assert classad_value(sub, "MY.APF_LOGURL") == LOG_URL
    assert classad_value(sub, "MY.TransferOutput") == ""


@pytest.mark.parametrize("make", [vanilla_batch, ce_batch], ids=["vanilla", "htcondor-ce"])
def test_each_process_gets_its_own_pilot_values(make):
    b = make()
    sub = parsed(b)
    for i in range(b.count):
        env = environment_of(expanded(sub, "environment", i))
        assert env == {k: v for k, v in b.pilot_environment(i).items() if k != "X509_USER_PROXY"}
        assert env["PANDA_TPID"] == f"{NAME}.{i}" and env["GTAG"] == f"{LOG_URL}/{NAME}.{i}.out"
        assert expanded(sub, "output", i) == str(b.stdout(i))
        assert expanded(sub, "error", i) == str(b.stderr(i))
        assert classad_value(sub, "MY.PANDA_TPID", i) == f"{NAME}.{i}"
        assert classad_value(sub, "MY.APF_OUTURL", i) == b.pilot_log_url(i)
        assert classad_value(sub, "MY.APF_ERRURL", i) == f"{LOG_URL}/{NAME}.{i}.err"


def test_the_factory_proxy_path_is_left_to_htcondor():
    # x509userproxy delegates the proxy to the node; the submit host's path would not exist there
    sub = parsed(vanilla_batch())
    assert "X509_USER_PROXY" not in environment_of(expanded(sub, "environment", 0))
    assert sub["x509userproxy"] == FACTORY_ENV["X509_USER_PROXY"]


def test_vanilla_asks_the_pool_for_memory_and_cores():
    sub = parsed(batch(queue(memory=2000, corecount=4, maxtime=7200)))
    assert sub["universe"] == "vanilla" and "grid_resource" not in sub.keys()
    assert (sub["request_memory"], sub["request_cpus"]) == ("2000", "4")
    assert sub["should_transfer_files"] == "IF_NEEDED" and sub["when_to_transfer_output"] == "ON_EXIT"
    assert "periodic_hold" not in sub.keys()
    assert "request_cpus" not in parsed(vanilla_batch()).keys()  # one core: HTCondor's default


def test_htcondor_ce_gets_queue_memory_walltime_and_cores_the_ce_way():
    sub = parsed(ce_batch())
    assert sub["universe"] == "grid"
    assert sub["grid_resource"] == "condor ce01.example.org ce01.example.org:9619"
    assert classad_value(sub, "MY.remote_queue") == "atlas"  # the CE router's `queue` -> BatchQueue
    assert classad_value(sub, "MY.maxMemory") == 4000  # MB
    assert classad_value(sub, "MY.maxWallTime") == 2880  # minutes: 48 h
    assert classad_value(sub, "MY.xcount") == 8
    assert classad_value(sub, "MY.voactivity") == "production"  # the jdladd line
    assert sub["should_transfer_files"] == "YES"


def test_htcondor_ce_port_and_batch_queue_fallback():
    sub = parsed(batch(queue(jobmanager="htcondor-ce", gatekeeper="ce02.example.org:9620", queue="long")))
    assert sub["grid_resource"] == "condor ce02.example.org ce02.example.org:9620"
    assert classad_value(sub, "MY.remote_queue") == "long"
    assert not {"MY.maxMemory", "MY.maxWallTime", "MY.xcount"} & set(sub.keys())


def test_gt2_is_the_classic_globus_form():
    q = queue(jobmanager="gt2", gatekeeper="gk.example.org:2119/jobmanager-pbs", localqueue="atlas")
    sub = parsed(batch(q))
    assert sub["grid_resource"] == "gt2 gk.example.org:2119/jobmanager-pbs"
    assert sub["globus_rsl"] == "(queue=atlas)(jobtype=single)"
    no_queue = parsed(batch(queue(jobmanager="gt2", gatekeeper="gk.example.org/jobmanager-pbs")))
    assert "globus_rsl" not in no_queue.keys()


def test_arc_names_the_ce():
    sub = parsed(batch(queue(jobmanager="arc", gatekeeper="arc01.example.org", localqueue="atlas")))
    assert sub["universe"] == "grid" and sub["grid_resource"] == "arc arc01.example.org"
    assert not {"MY.remote_queue", "globus_rsl"} & set(sub.keys())


def policy_verdict(expr: str, **ad) -> bool:
    """The expression, evaluated by HTCondor's ClassAd library against a job ad."""
    job = classad2.ClassAd(ad)
    job["policy"] = classad2.ExprTree(expr)
    return job.eval("policy") is True


def test_vanilla_removes_pilots_held_an_hour_or_running_past_maxtime():
    now = int(time.time())
    expr = parsed(batch(queue(maxtime=7200)))["periodic_remove"]
    assert policy_verdict(expr, JobStatus=5, EnteredCurrentStatus=now - 3700)
    assert not policy_verdict(expr, JobStatus=5, EnteredCurrentStatus=now - 600)
    assert policy_verdict(expr, JobStatus=2, EnteredCurrentStatus=now - 7300)
    assert not policy_verdict(expr, JobStatus=2, EnteredCurrentStatus=now - 7000)
    assert not policy_verdict(expr, JobStatus=1, EnteredCurrentStatus=now - 5 * 86400)  # the pool decides
    default = parsed(vanilla_batch())["periodic_remove"]  # no maxtime: 7 days
    assert not policy_verdict(default, JobStatus=2, EnteredCurrentStatus=now - 6 * 86400)
    assert policy_verdict(default, JobStatus=2, EnteredCurrentStatus=now - 8 * 86400)


def test_grid_pilots_follow_the_classic_hold_and_remove_policy():
    now = int(time.time())
    sub = parsed(ce_batch())  # maxtime 48 h, so 49 h with the grace for the site's own limit
    remove, hold = sub["periodic_remove"], sub["periodic_hold"]
    assert policy_verdict(remove, JobStatus=5, EnteredCurrentStatus=now - 3700)
    assert policy_verdict(remove, JobStatus=1, EnteredCurrentStatus=now - 86500)
    assert not policy_verdict(remove, JobStatus=1, EnteredCurrentStatus=now - 80000)
    assert not policy_verdict(remove, JobStatus=2, EnteredCurrentStatus=now - 48 * 3600 - 60)
    assert policy_verdict(remove, JobStatus=2, EnteredCurrentStatus=now - 49 * 3600 - 60)
    assert policy_verdict(hold, JobStatus=1, GridResourceUnavailableTime=now - 1900)
    assert not policy_verdict(hold, JobStatus=1, GridResourceUnavailableTime=now - 60)
    assert not policy_verdict(hold, JobStatus=1)  # the CE answers
    seven_days = parsed(batch(queue(jobmanager="arc", gatekeeper="arc01.example.org")))["periodic_remove"]
    assert policy_verdict(seven_days, JobStatus=2, EnteredCurrentStatus=now - 8 * 86400)
    assert not policy_verdict(seven_days, JobStatus=2, EnteredCurrentStatus=now - 6 * 86400)


# ---- quoting: whatever the factory passes arrives as it was


AWKWARD = ["plain", "two words", "it's", 'say "hi"', "tab\there", "", "''", '""', "a'b\"c d", "100%", "=x=y",
           "$PATH:/opt/bin", "#not a comment", "trailing space "]  # fmt: skip


@pytest.mark.parametrize("value", AWKWARD)
def test_environment_values_survive_htcondor_parsing(value):
    sub = parsed(vanilla_batch(environment={**FACTORY_ENV, "AWKWARD": value}))
    assert environment_of(expanded(sub, "environment", 1))["AWKWARD"] == value


def test_arguments_survive_htcondor_parsing():
    sub = parsed(vanilla_batch(arguments=tuple(AWKWARD)))
    assert split_new_syntax(sub["arguments"]) == AWKWARD
    assert split_new_syntax(parsed(vanilla_batch(arguments=()))["arguments"]) == []


def test_classad_strings_are_quoted_as_htcondor_quotes_them():
    url = 'https://logs.example.org/a "b" \\c'
    sub = parsed(vanilla_batch(log_url=url))
    assert classad_value(sub, "MY.APF_LOGURL") == url
    assert render(vanilla_batch(log_url=url)).count(f"+APF_LOGURL = {classad2.quote(url)}\n") == 1


# ---- refusals: nothing is rendered, so nothing is submitted


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("queue 5", "jdladd line 1: a queue statement"),
        ("Queue", "jdladd line 1: a queue statement"),
        ("requirements", "is not 'key = value'"),
        ("9lives = 1", "is not a submit key"),
        ("+my attr = 1", "is not a submit key"),
        ("executable = /bin/sh", "identity or credential"),
        ("Cmd = /bin/sh", "identity or credential"),
        ('+Cmd = "/bin/sh"', "identity or credential"),
        ("arguments = -x", "identity or credential"),
        ('+Args = "-x"', "identity or credential"),
        ('environment = "A=1"', "identity or credential"),
        ("env = A=1", "identity or credential"),
        ("getenv = True", "identity or credential"),
        ("x509userproxy = /tmp/x509up_u0", "identity or credential"),
        ("use_x509userproxy = false", "identity or credential"),
        ("universe = local", "identity or credential"),
        ("+JobUniverse = 7", "identity or credential"),
        ("grid_resource = condor evil.example.org evil.example.org:9619", "identity or credential"),
        ('+remote_Cmd = "/bin/sh"', "identity or credential"),
        ("+remote_JobUniverse = 5", "identity or credential"),
        ("output = /tmp/o", "identity or credential"),
        ("error = /tmp/e", "identity or credential"),
        ("log = /tmp/l", "identity or credential"),
        ('MY.UserLog = "/tmp/l"', "identity or credential"),
        ("transfer_executable = false", "identity or credential"),
        ("queue = 5", "a queue statement"),  # HTCondor's parser reads it as `queue` with "= 5"
        ("transfer_input_files = /etc/grid-security/hostkey.pem", "identity or credential"),
        ("+remote_initialdir = /", "identity or credential"),
        ("input = /pki/private/cakey.pem", "identity or credential"),
        ('+APF_QUEUE = "OTHER"', "already set by the factory"),
        ('+MATCH_APF_QUEUE = "OTHER"', "already set by the factory"),
        ('+PANDA_TPID = "x"', "already set by the factory"),
        ("periodic_remove = false", "already set by the factory"),
        ("+PeriodicRemove = false", "already set by the factory"),
        ("request_memory = 99999", "already set by the factory"),
        ("+RequestMemory = 99999", "already set by the factory"),
        ("notification = Always", "already set by the factory"),
        ("transfer_output_files = workdir", "identity or credential"),
        ("+foo =", "has no value"),
        ('+foo = "a" \\', "ends with a backslash"),
        ('+foo = "$ENV(PANDA_AUTH_TOKEN)"', "uses $ENV()"),
    ],
)
def test_jdladd_lines_that_would_override_or_break_the_description_are_refused(line, words, tmp_path):
    ran = []
    b = vanilla_batch(queue=queue(memory=2000, jdladd=line), log_dir=tmp_path / "logs")
    with pytest.raises(SubmitError, match="^queue CLOUDA_T2: jdladd line 1: ") as exc:
        CondorSubmitter(run=lambda argv, **kw: ran.append(argv)).submit(b)
    assert words in str(exc.value) and exc.value.submitted == []
    assert ran == [] and not (tmp_path / "logs").exists()


def test_jdladd_names_the_offending_line_and_grid_keys_are_the_ces():
    b = ce_batch(queue=queue(jobmanager="htcondor-ce", gatekeeper="ce01.example.org", localqueue="atlas",
                             jdladd='\n+voactivity = "production"\n\n+remote_queue = "other"'))  # fmt: skip
    with pytest.raises(SubmitError, match=r"jdladd line 4: \+remote_queue is already set by the factory"):
        render(b)
    b = ce_batch(
        queue=queue(jobmanager="htcondor-ce", gatekeeper="ce01.example.org", jdladd='+remote_queue = "long"')
    )
    assert classad_value(parsed(b), "MY.remote_queue") == "long"  # no localqueue: the site's own line stands


def test_jdladd_adds_what_the_factory_does_not_set():
    lines = ("accounting_group = group_atlas.prod\n  requirements = (OpSys == \"LINUX\")  \n"
             "+WantWholeNode = False\nqueue_depth = 5\n")  # fmt: skip
    sub = parsed(batch(queue(jdladd=lines)))
    assert sub["accounting_group"] == "group_atlas.prod" and sub["queue_depth"] == "5"  # a macro, not `queue`
    assert sub["requirements"] == '(OpSys == "LINUX")'
    assert classad_value(sub, "MY.WantWholeNode") is False
    assert sub.getQArgs() == "3"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (dict(environment={"1BAD": "x"}), "environment variable name '1BAD' is not an identifier"),
        (dict(environment={"A-B": "x"}), "environment variable name 'A-B'"),
        (dict(environment={"A": "two\nlines"}), "environment variable A 'two\\nlines' is not one line"),
        (dict(environment={"A": "x\r"}), "is not one line"),
        (dict(environment={"A": "$(Cluster)"}), "a macro condor_submit would expand"),
        (dict(environment={"A": "$ENV(HOME)"}), "a macro condor_submit would expand"),
        (dict(environment={"A": "$$(Machine)"}), "a macro condor_submit would expand"),
        (dict(environment={"A": "C:\\"}), "ends with a backslash"),
        (dict(arguments=("-x", "a\nqueue 100")), "argument 2 'a\\nqueue 100' is not one line"),
        (dict(executable=Path("wrapper.sh")), "the executable 'wrapper.sh' must be an absolute path"),
        (dict(proxy=Path("x509up")), "the proxy 'x509up' must be an absolute path"),
        (dict(log_dir=Path("logs")), "the log_dir 'logs' must be an absolute path"),
        (dict(log_url="https://x/$(Owner)"), "log_url"),
        (dict(name="tp x"), "batch name 'tp x'"),
        (dict(count=0), "at least one pilot"),
        (dict(queue=queue(jobmanager="cream")), "jobmanager 'cream' is not one of"),
        (dict(queue=queue(jobmanager="htcondor-ce", gatekeeper="ce01 evil")), "is not host[:port]"),
        (dict(queue=queue(jobmanager="gt2", gatekeeper="gk/jm (x)")), "is not a CE contact"),
        (dict(queue=queue(jobmanager="gt2", gatekeeper="gk", localqueue="a)(b")), "localqueue 'a)(b'"),
    ],
)
def test_what_cannot_go_into_a_description_is_refused(change, words):
    with pytest.raises(SubmitError, match="^queue CLOUDA_T2: ") as exc:
        render(vanilla_batch(**change))
    assert words in str(exc.value)


# ---- condor_submit


class Recorder:
    """A runner that records argv and answers each command with a canned Completed."""

    def __init__(self, **answers: tuple[int, str, str]) -> None:
        self.answers, self.argvs = answers, []

    def __call__(self, argv, **kwargs) -> Completed:
        self.argvs.append(list(argv))
        rc, out, err = self.answers[argv[0]]
        return Completed(tuple(argv), rc, out, err)


SUBMITTED = (DATA / "condor_submit.txt").read_text()
CONNECT_ERROR = (
    1,
    "Submitting job(s)",
    "\nERROR: Failed to connect to local queue manager\n"
    "CEDAR:6001:Failed to connect to <192.0.2.10:9618?addrs=192.0.2.10-9618&alias=submit01.example.org>\n",
)


def test_parse_submit_output_one_and_many_jobs():
    assert parse_submit_output(SUBMITTED) == ["4242.0", "4242.1", "4242.2"]
    assert parse_submit_output("Submitting job(s).\n1 job(s) submitted to cluster 77.\n") == ["77.0"]
    assert parse_submit_output(CONNECT_ERROR[1] + CONNECT_ERROR[2]) == []
    assert parse_submit_output("") == []


def test_submit_writes_the_description_and_returns_one_id_per_pilot(tmp_path):
    b = vanilla_batch(log_dir=tmp_path / "2026-11-25" / "CLOUDA_T2_1")
    run = Recorder(condor_submit=(0, SUBMITTED, ""))
    assert CondorSubmitter(run=run).submit(b) == ["4242.0", "4242.1", "4242.2"]
    jdl = b.log_dir / f"{NAME}.jdl"
    assert run.argvs == [["condor_submit", str(jdl)]]
    assert jdl.read_text() == render(b)


def test_submit_error_output_is_a_submit_error_with_nothing_recorded(tmp_path):
    run = Recorder(condor_submit=CONNECT_ERROR)
    with pytest.raises(SubmitError, match="ERROR: Failed to connect to local queue manager") as exc:
        CondorSubmitter(run=run).submit(vanilla_batch(log_dir=tmp_path))
    assert exc.value.submitted == [] and "exited with 1" in str(exc.value)


def test_a_count_mismatch_is_an_error_that_keeps_the_ids_that_went_in(tmp_path):
    run = Recorder(condor_submit=(0, "Submitting job(s)..\n2 job(s) submitted to cluster 4242.\n", ""))
    with pytest.raises(SubmitError, match="reported 2 job\\(s\\) for 3 pilots") as exc:
        CondorSubmitter(run=run).submit(vanilla_batch(log_dir=tmp_path))
    assert exc.value.submitted == ["4242.0", "4242.1"]


def test_a_failed_exit_after_the_jobs_went_in_still_reports_them(tmp_path):
    run = Recorder(condor_submit=(1, SUBMITTED, "WARNING: the log file could not be written\n"))
    with pytest.raises(SubmitError, match="log file could not be written") as exc:
        CondorSubmitter(run=run).submit(vanilla_batch(log_dir=tmp_path))
    assert exc.value.submitted == ["4242.0", "4242.1", "4242.2"]  # the factory tracks (and may cancel) them


def test_an_unwritable_log_dir_is_a_submit_error(tmp_path):
    (tmp_path / "file").write_text("")
    run = Recorder(condor_submit=(0, SUBMITTED, ""))
    with pytest.raises(SubmitError, match="cannot write the submit description"):
        CondorSubmitter(run=run).submit(vanilla_batch(log_dir=tmp_path / "file" / "logs"))
    assert run.argvs == []


# ---- condor_q / condor_history


Q_JSON = (DATA / "condor_q.json").read_text()
HISTORY_JSON = (DATA / "condor_history.json").read_text()


def test_samples_are_htcondor_json_ad_lists():
    for text in (Q_JSON, HISTORY_JSON):
        assert text.startswith("[\n{\n") and text.endswith("\n}\n]\n")  # CondorClassAdListWriter's frame
        chunks = text[2:-3].split("\n,\n")
        assert [json.loads(c) for c in chunks] == json.loads(text)
        for chunk in chunks:
            ad = classad2.parseOne(chunk, classad2.ParserType.JSON)  # HTCondor's JSON ClassAd parser
            assert dict(ad) == json.loads(chunk)
            names = list(json.loads(chunk))
            assert names == sorted(names, key=str.lower) and set(names) <= set(ATTRIBUTES)


def test_every_job_status_maps_to_a_batch_state():
    got = {**parse_jobs_json(Q_JSON), **parse_jobs_json(HISTORY_JSON)}
    held = ("held: Error from slot1_4@wn043.example.org: Failed to execute "
            "'/var/lib/condor/execute/dir_31337/condor_exec.exe': (errno=13: 'Permission denied')")  # fmt: skip
    assert got == {
        "4242.0": BatchStatus(BatchState.queued, info="idle"),
        "4242.1": BatchStatus(BatchState.running, info="running", workernode="wn042.example.org"),
        "4242.2": BatchStatus(BatchState.queued, info=held, workernode="wn043.example.org"),
        "4243.0": BatchStatus(BatchState.running, info="transferring output", workernode="wn040.example.org"),
        "4243.1": BatchStatus(BatchState.queued, info="suspended", workernode="wn041.example.org"),
        "4243.2": BatchStatus(BatchState.failed, info="removed: via condor_rm (by user autopilot)"),
        "4241.0": BatchStatus(BatchState.failed, info="removed: The job attribute PeriodicRemove expression "
                              "'(JobStatus == 5 && time() - EnteredCurrentStatus > 3600) || (JobStatus == 2 && "
                              "time() - EnteredCurrentStatus > 604800)' evaluated to TRUE"),
        "4240.2": BatchStatus(BatchState.failed, None, "completed: killed by signal 9 (SIGKILL)", "wn040.example.org"),
        "4240.1": BatchStatus(BatchState.done, 82, "completed", "wn041.example.org"),
        "4240.0": BatchStatus(BatchState.done, 0, "completed", "wn042.example.org"),
    }  # fmt: skip


def test_odd_ads_and_output():
    assert parse_jobs_json("") == {} and parse_jobs_json("\n") == {}  # condor_q prints nothing for no job
    ads = [{"ClusterId": 1, "ProcId": 0, "JobStatus": 9}, {"ClusterId": 1, "ProcId": 1, "JobStatus": 5},
           {"ClusterId": 1, "ProcId": 2, "JobStatus": 4}, {"ClusterId": 1, "ProcId": 3, "JobStatus": 3}]  # fmt: skip
    got = parse_jobs_json(json.dumps(ads))
    assert got["1.0"] == BatchStatus(BatchState.queued, info="JobStatus=9")  # unknown: not taken as ended
    assert got["1.1"].info == "held: no reason given"
    assert got["1.2"] == BatchStatus(BatchState.done, None, "completed")  # no ExitCode (a grid job)
    assert got["1.3"] == BatchStatus(BatchState.failed, info="removed")
    for bad in ("-- Failed to fetch ads from: <192.0.2.10:9618>", '{"ClusterId": 1}', '[{"ClusterId": 1}]',
                '[{"ClusterId": 1, "ProcId": 0, "JobStatus": "2"}]', "[1]"):  # fmt: skip
        with pytest.raises(BatchCommandError):
            parse_jobs_json(bad)


def test_status_asks_condor_q_then_condor_history_for_the_rest():
    run = Recorder(condor_q=(0, Q_JSON, ""), condor_history=(0, HISTORY_JSON, ""))
    ids = ["4242.0", "4242.1", "4242.2", "4243.0", "4243.1", "4243.2", "4240.0", "4240.1", "4240.2",
           "4241.0", "4239.0"]  # fmt: skip
    got = CondorSubmitter(run=run).status(ids)
    attributes = ",".join(ATTRIBUTES)
    assert run.argvs == [
        ["condor_q", "-json", "-attributes", attributes, *ids],
        ["condor_history", "-json", "-attributes", attributes, "-limit", "5",
         "4240.0", "4240.1", "4240.2", "4241.0", "4239.0"],
    ]  # fmt: skip
    assert list(got) == ids[:-1]  # 4239.0: neither knows it, so it is left out
    assert got["4242.1"].state is BatchState.running and got["4240.0"].exit_code == 0


def test_status_of_queued_pilots_needs_no_history_and_of_none_no_command():
    run = Recorder(condor_q=(0, Q_JSON, ""))
    got = CondorSubmitter(run=run).status(["4242.0", "4242.1", "4242.0"])
    assert list(got) == ["4242.0", "4242.1"] and [a[0] for a in run.argvs] == ["condor_q"]
    assert run.argvs[0][-2:] == ["4242.0", "4242.1"]  # no repeats on the command line
    empty = Recorder()
    assert CondorSubmitter(run=empty).status([]) == {} and empty.argvs == []


def test_many_ids_go_in_bounded_commands():
    run = Recorder(condor_q=(0, "", ""), condor_history=(0, "", ""))
    assert CondorSubmitter(run=run).status([f"9.{i}" for i in range(1200)]) == {}
    assert [(a[0], len(a)) for a in run.argvs] == [("condor_q", 504), ("condor_q", 504), ("condor_q", 204),
                                                   ("condor_history", 506), ("condor_history", 506),
                                                   ("condor_history", 206)]  # fmt: skip


def test_a_schedd_that_cannot_be_asked_is_a_batch_command_error():
    run = Recorder(
        condor_q=(1, "", "-- Failed to fetch ads from: <192.0.2.10:9618> : submit01.example.org\n")
    )
    with pytest.raises(BatchCommandError, match="condor_q exited with 1: -- Failed to fetch ads"):
        CondorSubmitter(run=run).status(["4242.0"])


@pytest.mark.parametrize(
    "bad", ["4242", "4242.0 4243.0", "-name", "4242.0;rm", "4242.x", "", " 4242.0", 4242]
)
def test_ids_that_are_not_cluster_proc_are_refused_before_any_command(bad):
    run = Recorder(condor_q=(0, "", ""), condor_rm=(0, "", ""))
    with pytest.raises(ValueError, match="is not an HTCondor job id"):
        CondorSubmitter(run=run).status(["4242.0", bad])
    with pytest.raises(ValueError, match="is not an HTCondor job id"):
        CondorSubmitter(run=run).cancel([bad])
    assert run.argvs == []


# ---- condor_rm


def test_cancel_removes_the_jobs():
    run = Recorder(condor_rm=(0, "Job 4242.0 marked for removal\nJob 4242.1 marked for removal\n", ""))
    CondorSubmitter(run=run).cancel(["4242.0", "4242.1"])
    assert run.argvs == [["condor_rm", "4242.0", "4242.1"]]
    CondorSubmitter(run=Recorder()).cancel([])


def test_a_failed_cancel_is_a_batch_command_error():
    run = Recorder(
        condor_rm=(1, "", "Couldn't find/remove all jobs matching constraint (ClusterId == 4242)\n")
    )
    with pytest.raises(BatchCommandError, match="condor_rm exited with 1: Couldn't find/remove"):
        CondorSubmitter(run=run).cancel(["4242.0"])


# ---- the real runner, on a machine without HTCondor's tools


def test_without_htcondor_tools_every_call_says_so(tmp_path):
    if shutil.which("condor_submit") or shutil.which("condor_q") or shutil.which("condor_rm"):
        pytest.skip("HTCondor's tools are installed here; this checks the message when they are not")
    submitter = CondorSubmitter()
    assert submitter._run is commands.run
    with pytest.raises(SubmitError, match="condor_submit: command not found") as exc:
        submitter.submit(vanilla_batch(log_dir=tmp_path))
    assert exc.value.submitted == [] and (tmp_path / f"{NAME}.jdl").exists()
    with pytest.raises(BatchCommandError, match="condor_q: command not found"):
        submitter.status(["4242.0"])
    with pytest.raises(BatchCommandError, match="condor_rm: command not found"):
        submitter.cancel(["4242.0"])
