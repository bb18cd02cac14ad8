# tests/lib.sh — helpers for the tool tests (sourced).
# check DESCRIPTION COMMAND...: "ok - DESCRIPTION" when COMMAND succeeds.
# LF_BIN holds the programs; each test file works in its own temporary folder.

: "${LF_BIN:=$(pwd)/bin}"
PATH="$LF_BIN:$PATH"
ROOT=$(pwd)
# LLaMA-Factory's demo data: $LF_SHARED_DATA, else shared/ in or beside the checkout
if [ -n "${LF_SHARED_DATA:-}" ]; then SHARED=$LF_SHARED_DATA
elif [ -d "$ROOT/shared/data" ]; then SHARED=$ROOT/shared/data
else SHARED=$ROOT/../shared/data; fi
# for tests that start MPI processes (env $MPI_TEST_ENV CMD, or export it):
# no single-copy transfers (containers forbid them), and Open MPI's own
# allocations, kept until exit, left out of sanitizer builds' leak checks
# (full stacks and its plugins kept loaded, so the suppressions see them)
MPI_TEST_ENV="OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mca_base_component_disable_dlclose=1
LSAN_OPTIONS=suppressions=$ROOT/tests/lsan-mpi.supp:fast_unwind_on_malloc=0:print_suppressions=0"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

check() {
	desc=$1
	shift
	if "$@" >"$T/.out" 2>&1; then
		echo "ok - $desc"
	else
		echo "not ok - $desc"
		sed 's/^/#   /' "$T/.out" | head -20
	fi
}

# fails CODE PATTERN COMMAND...: COMMAND exits with CODE and stderr matches PATTERN.
fails() {
	code=$1
	pattern=$2
	shift 2
	"$@" >"$T/.stdout" 2>"$T/.stderr"
	rc=$?
	if [ "$rc" -ne "$code" ]; then
		echo "exit status $rc, expected $code; stderr:"
		cat "$T/.stderr"
		return 1
	fi
	if ! grep -q -- "$pattern" "$T/.stderr"; then
		echo "stderr does not match '$pattern':"
		cat "$T/.stderr"
		return 1
	fi
}
