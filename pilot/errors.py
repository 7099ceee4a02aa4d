"""The pilot's error codes: the real pilot's numbering, names and texts (reference/pilot.md §10).

Servers, monitors and operators key on these numbers, so they are the real pilot3 ones
(pilot/common/errorcodes.py, 147 codes) plus the classic pilot's job-recovery and job-wrapper
codes pilot3 dropped. A failure inside the pilot is a `PilotFailure(code, diag)`; the final
update carries the first failure's code and a diag a person can act on.
"""

from __future__ import annotations

import signal

# code → (NAME, default message)
ERRORS: dict[int, tuple[str, str]] = {
    1008: ("GENERALERROR", "General pilot error, consult batch log"),
    1098: ("NOLOCALSPACE", "Not enough local space"),
    1099: ("STAGEINFAILED", "Failed to stage-in file"),
    1100: ("REPLICANOTFOUND", "Replica not found"),
    1103: ("NOSUCHFILE", "No such file or directory"),
    1104: ("USERDIRTOOLARGE", "User work directory too large"),
    1106: ("STDOUTTOOBIG", "Payload log or stdout file too big"),
    1110: ("SETUPFAILURE", "Failed during payload setup"),
    1115: ("NFSSQLITE", "NFS SQLite locking problems"),
    1116: ("QUEUEDATA", "Pilot could not download queuedata"),
    1117: ("QUEUEDATANOTOK", "Pilot found non-valid queuedata"),
    1124: ("OUTPUTFILETOOLARGE", "Output file too large"),
    1133: ("NOSTORAGE", "Fetching default storage failed: no activity related storage defined"),
    1137: ("STAGEOUTFAILED", "Failed to stage-out file"),
    1141: ("PUTMD5MISMATCH", "md5sum mismatch on output file"),
    1143: ("CHMODTRF", "Failed to chmod transform"),
    1144: ("PANDAKILL", "This job was killed by panda server"),
    1145: ("GETMD5MISMATCH", "md5sum mismatch on input file"),
    1149: ("TRFDOWNLOADFAILURE", "Transform could not be downloaded"),
    1150: ("LOOPINGJOB", "Looping job killed by pilot"),
    1151: ("STAGEINTIMEOUT", "File transfer timed out during stage-in"),
    1152: ("STAGEOUTTIMEOUT", "File transfer timed out during stage-out"),
    1163: ("NOPROXY", "Grid proxy not valid"),
    1165: ("MISSINGOUTPUTFILE", "Local output file is missing"),
    1168: ("SIZETOOLARGE", "Total file size too large"),
    1171: ("GETADMISMATCH", "adler32 mismatch on input file"),
    1172: ("PUTADMISMATCH", "adler32 mismatch on output file"),
    1177: ("NOVOMSPROXY", "Voms proxy not valid"),
    1180: ("GETGLOBUSSYSERR", "Globus system error during stage-in"),
    1181: ("PUTGLOBUSSYSERR", "Globus system error during stage-out"),
    1186: ("NOSOFTWAREDIR", "Software directory does not exist"),
    1187: ("NOPAYLOADMETADATA", "Payload metadata does not exist"),
    1190: ("LFNTOOLONG", "LFN too long (exceeding limit of 255 characters)"),
    1191: ("ZEROFILESIZE", "File size cannot be zero"),
    1199: ("MKDIR", "Failed to create directory"),
    1200: ("KILLSIGNAL", "Job terminated by unknown kill signal"),
    1201: ("SIGTERM", "Job killed by signal: SIGTERM"),
    1202: ("SIGQUIT", "Job killed by signal: SIGQUIT"),
    1203: ("SIGSEGV", "Job killed by signal: SIGSEGV"),
    1204: ("SIGXCPU", "Job killed by signal: SIGXCPU"),
    1205: ("USERKILL", "Job killed by user"),
    1206: ("SIGBUS", "Job killed by signal: SIGBUS"),
    1207: ("SIGUSR1", "Job killed by signal: SIGUSR1"),
    1208: ("SIGINT", "Job killed by signal: SIGINT"),
    1211: ("MISSINGINSTALLATION", "Missing installation"),
    1212: ("PAYLOADOUTOFMEMORY", "Payload ran out of memory"),
    1213: ("REACHEDMAXTIME", "Reached batch system time limit"),
    1220: ("UNKNOWNPAYLOADFAILURE", "Job failed due to unknown reason (consult log file)"),
    1221: ("FILEEXISTS", "File already exists"),
    1223: ("BADALLOC", "Transform failed due to bad_alloc"),
    1224: ("ESRECOVERABLE", "Event service: recoverable error"),
    1228: ("ESFATAL", "Event service: fatal error"),
    1234: ("EXECUTEDCLONEJOB", "Clone job is already executed"),
    1235: ("PAYLOADEXCEEDMAXMEM", "Payload exceeded maximum allowed memory"),
    1236: ("FAILEDBYSERVER", "Failed by server"),
    1238: ("ESNOEVENTS", "Event service: no events"),
    1240: ("MESSAGEHANDLINGFAILURE", "Failed to handle message from payload"),
    1242: ("CHKSUMNOTSUP", "Query checksum is not supported"),
    1244: ("NORELEASEFOUND", "No release candidates found"),
    1246: ("NOUSERTARBALL", "User tarball could not be downloaded from PanDA server"),
    1247: ("BADXML", "Badly formed XML"),
    1300: ("NOTIMPLEMENTED", "The class or function is not implemented"),
    1301: ("UNKNOWNEXCEPTION", "An unknown pilot exception has occurred"),
    1302: ("CONVERSIONFAILURE", "Failed to convert object data"),
    1303: ("FILEHANDLINGFAILURE", "Failed during file handling"),
    1305: ("PAYLOADEXECUTIONFAILURE", "Failed to execute payload"),
    1306: ("SINGULARITYGENERALFAILURE", "Singularity/Apptainer: general failure"),
    1307: ("SINGULARITYNOLOOPDEVICES", "Singularity/Apptainer: No more available loop devices"),
    1308: ("SINGULARITYBINDPOINTFAILURE", "Singularity/Apptainer: Not mounting requested bind point"),
    1309: ("SINGULARITYIMAGEMOUNTFAILURE", "Singularity/Apptainer: Failed to mount image"),
    1310: ("PAYLOADEXECUTIONEXCEPTION", "Exception caught during payload execution"),
    1311: ("NOTDEFINED", "Not defined"),
    1312: ("NOTSAMELENGTH", "Not same length"),
    1313: ("NOSTORAGEPROTOCOL", "No protocol defined for storage endpoint"),
    1314: ("UNKNOWNCHECKSUMTYPE", "Unknown checksum type"),
    1315: ("UNKNOWNTRFFAILURE", "Unknown transform failure"),
    1316: ("RUCIOSERVICEUNAVAILABLE", "Rucio: Service unavailable"),
    1317: ("EXCEEDEDMAXWAITTIME", "Exceeded maximum waiting time"),
    1318: ("COMMUNICATIONFAILURE", "Failed to communicate with server"),
    1319: ("INTERNALPILOTPROBLEM", "An internal Pilot problem has occurred (consult Pilot log)"),
    1320: ("LOGFILECREATIONFAILURE", "Failed during creation of log file"),
    1321: ("RUCIOLOCATIONFAILED", "Failed to get client location for Rucio"),
    1322: ("RUCIOLISTREPLICASFAILED", "Failed to get replicas from Rucio"),
    1323: ("UNKNOWNCOPYTOOL", "Unknown copy tool"),
    1324: ("SERVICENOTAVAILABLE", "Service not available at the moment"),
    1325: ("SINGULARITYNOTINSTALLED", "Singularity: not installed"),
    1326: ("NOREPLICAS", "No matching replicas were found in list_replicas() output"),
    1327: ("UNREACHABLENETWORK", "Unable to stage-in file since network is unreachable"),
    1328: ("PAYLOADSIGSEGV", "SIGSEGV: Invalid memory reference or a segmentation fault"),
    1329: ("NONDETERMINISTICDDM", "Failed to construct SURL for non-deterministic ddm (update CRIC)"),
    1330: ("JSONRETRIEVALTIMEOUT", "JSON retrieval timed out"),
    1331: ("MISSINGINPUTFILE", "Input file is missing in storage element"),
    1332: ("BLACKHOLE", "Black hole detected in file system (consult Pilot log)"),
    1333: ("NOREMOTESPACE", "No space left on device"),
    1334: ("SETUPFATAL", "Setup failed with a fatal exception (consult Payload log)"),
    1335: ("MISSINGUSERCODE", "User code not available on PanDA server (resubmit task with --useNewCode)"),
    1336: ("JOBALREADYRUNNING", "Job is already running elsewhere"),
    1337: ("BADMEMORYMONITORJSON", "Memory monitor produced bad output"),
    1338: ("STAGEINAUTHENTICATIONFAILURE", "Authentication failure during stage-in"),
    1339: ("DBRELEASEFAILURE", "Local DBRelease handling failed (consult Pilot log)"),
    1340: (
        "SINGULARITYNEWUSERNAMESPACE",
        "Singularity/Apptainer: Failed invoking the NEWUSER namespace runtime",
    ),
    1341: ("BADQUEUECONFIGURATION", "Bad queue configuration detected"),
    1342: ("MIDDLEWAREIMPORTFAILURE", "Failed to import middleware (consult Pilot log)"),
    1343: ("NOOUTPUTINJOBREPORT", "Found no output in job report"),
    1344: ("RESOURCEUNAVAILABLE", "Resource temporarily unavailable"),
    1345: ("SINGULARITYFAILEDUSERNAMESPACE", "Singularity/Apptainer: Failed to create user namespace"),
    1346: ("TRANSFORMNOTFOUND", "Transform not found"),
    1347: ("UNSUPPORTEDSL5OS", "Unsupported SL5 OS"),
    1348: ("SINGULARITYRESOURCEUNAVAILABLE", "Singularity/Apptainer: Resource temporarily unavailable"),
    1349: ("UNRECOGNIZEDTRFARGUMENTS", "Unrecognized transform arguments"),
    1350: ("EMPTYOUTPUTFILE", "Empty output file detected"),
    1351: ("UNRECOGNIZEDTRFSTDERR", "Unrecognized fatal error in transform stderr"),
    1352: ("STATFILEPROBLEM", "Failed to stat proc file for CPU consumption calculation"),
    1353: ("NOSUCHPROCESS", "CPU consumption calculation failed: No such process"),
    1354: ("GENERALCPUCALCPROBLEM", "General CPU consumption calculation problem (consult Pilot log)"),
    1355: ("COREDUMP", "Core dump detected"),
    1356: ("PREPROCESSFAILURE", "Pre-process command failed"),
    1357: ("POSTPROCESSFAILURE", "Post-process command failed"),
    1358: ("MISSINGRELEASEUNPACKED", "Missing release setup in unpacked container"),
    1359: ("PANDAQUEUENOTACTIVE", "PanDA queue is not active"),
    1360: ("IMAGENOTFOUND", "Image not found"),
    1361: ("REMOTEFILECOULDNOTBEOPENED", "Remote file could not be opened"),
    1362: ("XRDCPERROR", "Xrdcp was unable to open file"),
    1363: ("KILLPAYLOAD", "Raythena has decided to kill payload"),
    1364: ("MISSINGCREDENTIALS", "Unable to locate credentials for S3 transfer"),
    1365: ("NOCTYPES", "Python module ctypes not available on worker node"),
    1366: ("CHECKSUMCALCFAILURE", "Failure during checksum calculation"),
    1367: ("COMMANDTIMEDOUT", "Command timed out"),
    1368: ("REMOTEFILEOPENTIMEDOUT", "Remote file open timed out"),
    1369: ("FRONTIER", "Frontier error"),
    1370: ("VOMSPROXYABOUTTOEXPIRE", "VOMS proxy is about to expire"),
    1371: ("BADOUTPUTFILENAME", "Output file name contains illegal characters"),
    1372: ("APPTAINERNOTINSTALLED", "Apptainer: not installed"),
    1373: ("CERTIFICATEHASEXPIRED", "Certificate has expired"),
    1374: ("REMOTEFILEDICTDOESNOTEXIST", "Remote file open dictionary does not exist"),
    1375: ("LEASETIME", "Lease time is up (internal)"),
    1376: ("LOGCREATIONTIMEOUT", "Log file creation timed out"),
    1377: ("CVMFSISNOTALIVE", "CVMFS is not responding"),
    1378: ("LSETUPTIMEDOUT", "Lsetup command timed out during remote file open"),
    1379: ("PREEMPTION", "Job was preempted"),
    1380: ("ARCPROXYFAILURE", "General arcproxy failure"),
    1381: ("ARCPROXYLIBFAILURE", "Arcproxy failure while loading shared libraries"),
    1382: ("PROXYTOOSHORT", "Proxy is too short"),
    1383: ("STAGEOUTAUTHENTICATIONFAILURE", "Authentication failure during stage-out"),
    1384: ("QUEUENOTSETUPFORCONTAINERS", "Queue is not set up for containers"),
    1385: ("NOJOBSINPANDA", "No jobs in PanDA"),
    1386: ("PANDAQUEUENOTONLINE", "PanDA queue is not online"),
    # PanDA-WMS: the job specification does not match the server's signature (protocol/signing.py)
    1390: ("BADJOBSIGNATURE", "Job specification signature does not verify"),
    # classic pilot (PanDAWMS/pilot PilotErrors.py): job recovery and the job wrapper
    1153: ("LOSTJOBNOTFINISHED", "Lost job was not finished"),
    1155: ("LOSTJOBFILETRANSFER", "Lost job file transfer failed"),
    1156: ("LOSTJOBRECOVERYFAILED", "Pilot could not recover job"),
    1158: ("LOSTJOBMAXEDOUT", "Exceeded maximum number of job recovery attempts"),
    1176: ("NOCHILDPROCESSES", "Job wrapper died without reporting (no child processes)"),
    # PanDA-WMS: identity switching (the role gLExec played for classic pilots)
    1391: ("IDENTITYSWITCH", "Could not run the payload as the submitter's mapped account"),
}
CODES: dict[str, int] = {name: code for code, (name, _msg) in ERRORS.items()}

# Process exit codes of the pilot (reference/pilot.md §10.3)
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_GENERAL = 65
EXIT_NO_LOCAL_SPACE = 69
EXIT_QUEUEDATA = 71
EXIT_BAD_QUEUEDATA = 72
EXIT_QUEUE_NOT_ACTIVE = 78
EXIT_COMMUNICATION = 79
EXIT_NO_JOBS = 82
EXIT_QUEUE_OFFLINE = 83
_EXIT_OF_CODE = {
    CODES["NOLOCALSPACE"]: EXIT_NO_LOCAL_SPACE,
    CODES["QUEUEDATA"]: EXIT_QUEUEDATA,
    CODES["QUEUEDATANOTOK"]: EXIT_BAD_QUEUEDATA,
    CODES["PANDAQUEUENOTACTIVE"]: EXIT_QUEUE_NOT_ACTIVE,
    CODES["PANDAQUEUENOTONLINE"]: EXIT_QUEUE_OFFLINE,
    CODES["COMMUNICATIONFAILURE"]: EXIT_COMMUNICATION,
    CODES["NOJOBSINPANDA"]: EXIT_NO_JOBS,
}


# Signal → pilot error (1200–1208); any other signal, SIGKILL included, is 1200 KILLSIGNAL
SIGNAL_ERRORS: dict[int, int] = {
    signal.SIGTERM: CODES["SIGTERM"], signal.SIGQUIT: CODES["SIGQUIT"], signal.SIGSEGV: CODES["SIGSEGV"],
    signal.SIGXCPU: CODES["SIGXCPU"], signal.SIGBUS: CODES["SIGBUS"], signal.SIGUSR1: CODES["SIGUSR1"],
    signal.SIGINT: CODES["SIGINT"],
}  # fmt: skip
# The signals the pilot and its job wrapper catch to end a job gracefully (batch system, terminal)
CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGINT)


def signal_error(signum: int) -> int:
    return SIGNAL_ERRORS.get(signum, CODES["KILLSIGNAL"])


def name(code: int) -> str:
    return ERRORS.get(code, ("UNKNOWN", ""))[0]


def message(code: int) -> str:
    return ERRORS.get(code, ("", f"pilot error {code}"))[1]


def exit_code(code: int) -> int:
    """The pilot process exit code for a pilot error (untranslated codes give 1, as pilot3)."""
    if code == 0:
        return EXIT_OK
    return _EXIT_OF_CODE.get(code, EXIT_FAILURE)


class PilotFailure(Exception):
    """A failure the pilot reports: an error code from ERRORS and a diag for people."""

    def __init__(self, code: int, diag: str = "") -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown pilot error code {code}")
        self.code = code
        self.diag = diag or message(code)
        super().__init__(f"{code} {name(code)}: {self.diag}")
