#!/usr/bin/env bash
# `npm test`: prepare the machine (scripts/setup.sh), start a Podman API service of the tests' own
# at .test-run/podman.sock (exported as SANDBOXSHIFT_TEST_SOCKET), run tap (config: .taprc) with
# the given arguments, stop the service, then print a plain closing line `N passed, N failed`
# computed from tap's summary and exit with tap's exit code.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/lib.sh"

# The test command contacts no container registry: the suite runs against the offline images
# (the ones its contract test proves), built from Debian packages when missing.
export SANDBOXSHIFT_IMAGE_MODE="${SANDBOXSHIFT_IMAGE_MODE:-offline}"
bash "$SANDBOXSHIFT_ROOT/scripts/setup.sh"

RUN_DIR="$SANDBOXSHIFT_ROOT/.test-run"
mkdir -p "$RUN_DIR"
SOCK_DIR="$RUN_DIR"
SOCK_TMP=""
# A unix socket path must fit in 108 bytes; a deep checkout gets a short directory under /tmp.
if ((${#RUN_DIR} > 80)); then
  SOCK_TMP="$(mktemp -d /tmp/sandboxshift-test.XXXXXX)"
  SOCK_DIR="$SOCK_TMP"
  warn "repository path too long for a unix socket: using $SOCK_DIR/podman.sock"
fi
SOCKET="$SOCK_DIR/podman.sock"
PIDFILE="$RUN_DIR/podman.pid"
TAP_LOG="$RUN_DIR/tap.log"

remove_test_containers() {
  local ids
  ids="$(pm ps -aq --filter label=io.sandboxshift.test=1 2>/dev/null)" || {
    warn "could not list test containers"
    return 0
  }
  if [[ -n "$ids" ]]; then
    step "removing $(wc -w <<<"$ids") container(s) labelled io.sandboxshift.test=1"
    # A second pass: Podman 4.3 refuses (EBUSY on the shm mount) to remove a running container
    # whose conmon has not exited yet, and succeeds once it has.
    xargs -r podman --runtime runc rm -f <<<"$ids" >/dev/null 2>&1 ||
      { sleep 1; xargs -r podman --runtime runc rm -f --ignore <<<"$ids" >/dev/null; } ||
      warn "could not remove every test container"
  fi
}

TAP_PGID=""
# Stop the whole tap process tree (tap, its test processes, tee): it runs in a process group of
# its own, so a signal to this script does not have to wait for the tests to finish.
stop_tap() {
  if [[ -n "$TAP_PGID" ]] && kill -0 -- "-$TAP_PGID" 2>/dev/null; then
    step "stopping tap (process group $TAP_PGID)"
    kill -TERM -- "-$TAP_PGID" 2>/dev/null || true
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 -- "-$TAP_PGID" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$TAP_PGID" 2>/dev/null || true
  fi
  TAP_PGID=""
}

CLEANED=0
cleanup() {
  [[ $CLEANED -eq 1 ]] && return 0
  CLEANED=1
  stop_tap
  stop_podman_service "$PIDFILE"
  rm -f "$SOCKET"
  [[ -n "$SOCK_TMP" ]] && rmdir "$SOCK_TMP" 2>/dev/null
  remove_test_containers
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "removing leftovers of earlier aborted test runs"
remove_test_containers

start_podman_service "$SOCKET" "$PIDFILE" "$RUN_DIR/podman.log"
export SANDBOXSHIFT_TEST_SOCKET="$SOCKET"

cd "$SANDBOXSHIFT_ROOT"
rm -f "$TAP_LOG"
# tap writes each file's raw TAP under .tap/test-results; the marker tells this run's from older ones.
START_MARK="$RUN_DIR/tap.started"
touch "$START_MARK"
step "running tap${*:+ $*} (SANDBOXSHIFT_TEST_SOCKET=$SANDBOXSHIFT_TEST_SOCKET; output also in $TAP_LOG)"
# Job control gives the tap pipeline its own process group (PGID = $!); `wait` lets the INT/TERM
# traps run at once instead of after the tests.
set -m
(
  set +e
  npx tap "$@" 2>&1 | tee "$TAP_LOG"
  exit "${PIPESTATUS[0]}"
) </dev/null &
TAP_PGID=$!
set +m
set +e
wait "$TAP_PGID"
tap_rc=$?
set -e
TAP_PGID=""

cleanup

# The failed assertions, repeated after the coverage table so that the end of the output names them.
list_failures() {
  local results="$SANDBOXSHIFT_ROOT/.tap/test-results"
  [[ -d "$results" ]] || return 0
  find "$results" -name '*.tap' -newer "$START_MARK" -print0 | sort -z |
    xargs -0 -r awk -v root="$results/" '
      /^[[:space:]]*not ok / { name = $0; sub(/^[[:space:]]*/, "", name); pending = 1; next }
      pending && line == "?" && /lineNumber:/ { line = $2 }
      pending && /^[[:space:]]*\.\.\.$/ || pending && /^[[:space:]]*(ok|not ok) / {
        file = FILENAME; sub(root, "", file); sub(/\.tap$/, "", file)
        printf "  %s:%s  %s\n", file, line, name; pending = 0; line = "?"
      }
      BEGIN { line = "?" }'
}
failures="$(list_failures || true)"
if [[ -n "$failures" ]]; then
  echo "failed assertions (file:line, innermost first):"
  echo "$failures"
fi

# tap 21 ends with a line like `# { total: 8, pass: 4, fail: 2, todo: 1, skip: 1 }` (keys with a
# zero count are left out: `# { total: 3, pass: 3 }`). The counts are assertions; a test file that
# crashes counts as one failure.
summary="$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$TAP_LOG" | grep -E '^# \{ total: [0-9]+' | tail -n1 || true)"
count() { sed -nE "s/.*[{,] $1: ([0-9]+).*/\1/p" <<<"$summary"; }
if [[ -n "$summary" ]]; then
  pass="$(count pass)" fail="$(count fail)" skipped="$(count skip)" todo="$(count todo)"
  pass=${pass:-0} fail=${fail:-0} skip=$((${skipped:-0} + ${todo:-0}))
else
  pass=0 fail=0 skip=0
  step "tap printed no summary line (exit code $tap_rc)"
fi
if [[ $tap_rc -ne 0 && $fail -eq 0 ]]; then
  step "tap exited with code $tap_rc although no assertion failed (coverage below threshold, no coverage generated, or no test files; see $TAP_LOG)"
fi
if ((skip > 0)); then
  echo "$pass passed, $fail failed, $skip skipped"
else
  echo "$pass passed, $fail failed"
fi
exit "$tap_rc"
