#!/bin/bash
# PanDA-WMS pilot wrapper: what every batch job AutoPilot submits runs (docs/autopilot.md).
#
#   wrapper.sh -q QUEUE -w SERVER_URL [-- PILOT_ARGUMENTS...]
#
# 1. says who and where it is; 2. checks the worker: python, proxy (present, not expiring), CA
# directory, free space in the work directory; 3. finds the pilot next to it (PILOT_HOME) or
# fetches the pilot code from the factory (PILOT_CODE_URL, checked against PILOT_CODE_SHA256);
# 4. runs it with the queue, the server and the tracking ids (schedulerID = PANDA_JSID, pilotID =
# GTAG, the URL of this log); 5. reports the pilot's exit code (last line of this log and
# PILOT_EXIT_FILE) and removes its temporary directory.
#
# Environment, set by the factory: PANDA_JSID, GTAG, PANDA_TPID, FACTORYQUEUE, X509_USER_PROXY,
# X509_CERT_DIR, PILOT_PYTHON, PILOT_HOME or PILOT_CODE_URL + PILOT_CODE_SHA256, PILOT_WORKDIR
# (default $TMPDIR, then /tmp), PILOT_MIN_FREE_MB (default 500), PILOT_EXIT_FILE (optional).
#
# Exit code: the pilot's (0 and 82 "no job" are normal ends), or the wrapper's own:
#   90 bad usage, 91 the worker failed a check, 92 the pilot code could not be found or fetched.

set -u
umask 077

QUEUE="" URL=""
usage() { echo "usage: $0 -q QUEUE -w SERVER_URL [-- PILOT_ARGUMENTS...]" >&2; }
while getopts "q:w:h" opt; do
  case "$opt" in
    q) QUEUE=$OPTARG ;;
    w) URL=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage; exit 90 ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
if [ -z "$QUEUE" ] || [ -z "$URL" ]; then usage; exit 90; fi

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) wrapper: $*"; }
report() {  # the exit code, where the factory and people look for it
  say "exit code $1${2:+ ($2)}"
  if [ -n "${PILOT_EXIT_FILE:-}" ]; then
    echo "$1" > "$PILOT_EXIT_FILE.tmp.$$" && mv -f "$PILOT_EXIT_FILE.tmp.$$" "$PILOT_EXIT_FILE"
  fi
}
fail() { report "$1" "$2"; exit "$1"; }

PILOT="" SIGNALLED=""
on_term() {  # a TERM from the batch system (scancel, condor_rm, the local submitter's cancel)
  SIGNALLED=1
  if [ -n "$PILOT" ]; then
    say "signal: passing TERM to the pilot"
    kill -TERM "$PILOT" 2>/dev/null
  else
    fail 143 "terminated before the pilot started"
  fi
}
trap on_term TERM INT

say "PanDA-WMS pilot wrapper for queue $QUEUE, server $URL"
say "pilot ${PANDA_TPID:-?} of factory ${PANDA_JSID:-?} on $(hostname) as $(id -un), pid $$, log ${GTAG:-?}"

# ---- 2. the worker
PY=${PILOT_PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || fail 91 "no python: $PY"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null || fail 91 "$PY is older than 3.9"
[ -n "${X509_USER_PROXY:-}" ] && [ -r "$X509_USER_PROXY" ] || fail 91 "no readable proxy (X509_USER_PROXY)"
if command -v openssl >/dev/null 2>&1; then
  openssl x509 -noout -checkend 600 -in "$X509_USER_PROXY" >/dev/null 2>&1 \
    || fail 91 "the proxy has expired or expires within 10 minutes"
else
  say "openssl not found: the proxy's lifetime is left to the pilot"
fi
[ -d "${X509_CERT_DIR:-}" ] || fail 91 "no CA directory (X509_CERT_DIR=${X509_CERT_DIR:-})"
BASE=${PILOT_WORKDIR:-${TMPDIR:-/tmp}}
mkdir -p "$BASE" 2>/dev/null || fail 91 "cannot make the work directory $BASE"
WORK=$(mktemp -d "$BASE/autopilot-XXXXXXXX") || fail 91 "cannot write in $BASE"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
FREE_MB=$(df -Pm "$WORK" | awk 'NR == 2 {print $4}')
if [ "${FREE_MB:-0}" -lt "${PILOT_MIN_FREE_MB:-500}" ]; then
  fail 91 "only ${FREE_MB:-0} MB free in $BASE (need ${PILOT_MIN_FREE_MB:-500})"
fi
say "python $("$PY" -c 'import platform; print(platform.python_version())'), work directory $WORK (${FREE_MB} MB free)"

# ---- 3. the pilot code
if [ -n "${PILOT_CODE_URL:-}" ]; then
  [ -n "${PILOT_CODE_SHA256:-}" ] || fail 92 "PILOT_CODE_URL without PILOT_CODE_SHA256"
  command -v curl >/dev/null 2>&1 || fail 92 "curl is needed to fetch the pilot code"
  curl -fsS --max-time 120 --max-filesize 50000000 -o "$WORK/pilotcode.tar.gz" "$PILOT_CODE_URL" \
    || fail 92 "cannot fetch $PILOT_CODE_URL"
  GOT=$(sha256sum "$WORK/pilotcode.tar.gz" | cut -d' ' -f1)
  [ "$GOT" = "$PILOT_CODE_SHA256" ] || fail 92 "pilot code checksum $GOT is not the expected $PILOT_CODE_SHA256"
  mkdir "$WORK/code" && tar -xzf "$WORK/pilotcode.tar.gz" -C "$WORK/code" --no-same-owner \
    || fail 92 "cannot unpack the pilot code"
  CODE="$WORK/code"
  say "pilot code fetched from $PILOT_CODE_URL (sha256 $GOT)"
else
  CODE=${PILOT_HOME:-$(cd "$(dirname "$0")/.." && pwd)}
  [ -f "$CODE/pilot/__main__.py" ] || fail 92 "no pilot in $CODE (set PILOT_HOME or PILOT_CODE_URL)"
  say "pilot code in $CODE"
fi

# ---- 4. the pilot, waited for; a TERM goes on to it (on_term above)
unset https_proxy HTTPS_PROXY http_proxy HTTP_PROXY
cd "$WORK" || fail 91 "cannot enter $WORK"  # also keeps `python -m pilot` from finding a pilot in the old cwd
export PYTHONPATH="$CODE${PYTHONPATH:+:$PYTHONPATH}"
ARGS=(-m pilot -q "$QUEUE" --url "$URL" -a "$WORK")
[ -n "${PANDA_JSID:-}" ] && ARGS+=(--scheduler-id "$PANDA_JSID")
[ -n "${GTAG:-}" ] && ARGS+=(--pilot-id "$GTAG")
say "running: $PY ${ARGS[*]} $*"
"$PY" "${ARGS[@]}" "$@" &
PILOT=$!
wait "$PILOT"
RC=$?
if [ -n "$SIGNALLED" ]; then  # wait returned early for the signal: the pilot's own code comes next
  wait "$PILOT"
  RC=$?
  while kill -0 "$PILOT" 2>/dev/null; do  # another signal interrupted that wait too
    wait "$PILOT"
    RC=$?
  done
fi

# ---- 5. the end
report "$RC"
exit "$RC"
