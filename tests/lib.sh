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

# same_log A B [TOL]: two trainer_log.jsonl of as many lines, each line's
# loss, grad_norm, eval_loss and lr within TOL (default 1e-6) relative
# (absolute below 1)
same_log() {
	awk -v tol="${3:-1e-6}" '
	function grab(line, key,   m) { return match(line, "\"" key "\":[-0-9.e]+") ? substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 3) : "" }
	NR == FNR { a[FNR] = $0; n = FNR; next }
	{
		if (FNR > n) { print "extra line " FNR; bad = 1; exit }
		split("loss grad_norm eval_loss lr", keys, " ")
		for (k in keys) {
			x = grab(a[FNR], keys[k]); y = grab($0, keys[k])
			if (x == "" && y == "") continue
			d = x - y; if (d < 0) d = -d
			s = x < 0 ? -x : x
			if (x == "" || y == "" || d > tol * (s > 1 ? s : 1)) { print "line " FNR " " keys[k] ": " x " vs " y; bad = 1 }
		}
		m = FNR
	}
	END { if (m != n) { print m " lines, expected " n; bad = 1 } exit bad }' "$1" "$2"
}

# same_tensors A B TOL [MIN]: two safetensors files of F32 tensors with the
# same names (at least MIN of them, default 1), each tensor of A within TOL
# of the largest element of B's
same_tensors() {
	python3 - "$@" <<'PY'
import array, json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: array.array("f", b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
least = int(sys.argv[4]) if len(sys.argv) > 4 else 1
assert sorted(a) == sorted(b), "tensors differ: %s" % sorted(set(a) ^ set(b))
assert len(a) >= least, "%d tensors, expected at least %d" % (len(a), least)
for k in a:
    big = max(abs(x) for x in b[k]) or 1e-30
    worst = max(abs(x - y) for x, y in zip(a[k], b[k])) / big
    assert worst <= tol, "%s: %.2g of its largest" % (k, worst)
PY
}
