#!/bin/sh
# tests/run.sh — run every test suite and end with "N passed, N failed".
#
# Suites: the C unit tests ($LF_UNITS/test_*, kernels_*), the tool tests
# (tests/tools/*.sh) and the oracle checks (tests/tools/*.py; left out with
# LF_NO_ORACLE=1).  Each suite prints one "ok - ..." or "not ok - ..." line
# per check (oracle suites run with $LF_PYTHON, by default the python of
# scripts/oracle-venv.sh's cached virtualenv); a suite that exits non-zero without a "not ok" line counts as one
# failure.  LF_BIN is where the programs are, LF_UNITS the test binaries.
# Run one suite: tests/run.sh tests/tools/lf-template.sh

: "${LF_BIN:=$(pwd)/bin}"
: "${LF_UNITS:=$(pwd)/build/dyn/tests}"
venv=${LF_ORACLE_VENV:-$HOME/.cache/lf/oracle-venv}
[ -x "$venv/bin/python" ] && : "${LF_PYTHON:=$venv/bin/python}"
: "${LF_PYTHON:=python3}"
export LF_BIN LF_UNITS LF_PYTHON
cd "$(dirname "$0")/.." || exit 2

passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_suite() { # name, command...
	name=$1
	shift
	"$@" >"$log" 2>&1
	rc=$?
	ok=$(grep -c '^ok ' "$log")
	bad=$(grep -c '^not ok ' "$log")
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		bad=1
		echo "not ok - $name exited with status $rc" >>"$log"
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
	if [ "$bad" -gt 0 ]; then
		echo "FAIL $name ($ok passed, $bad failed)"
		grep -v '^ok ' "$log" | sed 's/^/    /' | head -60
	else
		echo "pass $name ($ok)"
	fi
}

if [ $# -gt 0 ]; then
	suites="$*"
else
	suites=$(ls "$LF_UNITS"/test_* "$LF_UNITS"/kernels_* 2>/dev/null; ls tests/tools/*.sh; \
		[ -n "$LF_NO_ORACLE" ] || ls tests/tools/*.py)
fi
for s in $suites; do
	case $s in
	*.sh) run_suite "$s" sh "$s" ;;
	*.py) run_suite "$s" "$LF_PYTHON" "$s" ;;
	*) run_suite "$(basename "$s")" "$s" ;;
	esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
