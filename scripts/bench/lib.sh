# scripts/bench/lib.sh — what the benchmarks share (sourced): the machine's
# busy CPU time, a command timed with its peak memory and the load others put
# on the machine meanwhile, and waiting for a quiet machine.  The caller sets
# $work (a scratch folder), $noise (cores others may use and still count as
# quiet) and $quiet_wait (seconds to wait at most).

# busy: the machine's busy CPU time so far, in jiffies (1/100 s): user nice system irq softirq steal
busy() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# timed TAG CMD...: run CMD under GNU time ("peak-RSS-KiB wall user sys" into $work/TAG.time) with the
# machine's busy jiffies before and after in $work/TAG.busy: their difference less CMD's own user + sys
# is what other processes took meanwhile
timed() {
	local tag=$1 b0 rc=0
	shift
	b0=$(busy)
	/usr/bin/time -f "%M %e %U %S" -o "$work/$tag.time" "$@" || rc=$?
	echo "$b0 $(busy)" >"$work/$tag.busy"
	return $rc
}

# quiet: wait (up to $quiet_wait s) until the other processes take under $noise of a core for 2 s running
quiet() {
	local waited=0 b0 b1
	while :; do
		b0=$(busy)
		sleep 2
		b1=$(busy)
		awk "BEGIN { exit !(($b1 - $b0) / 200 < $noise) }" && return 0
		waited=$((waited + 2))
		[ "$waited" = 2 ] && echo "  waiting for a quiet machine (others use $(awk "BEGIN { print ($b1 - $b0) / 200 }") cores) ..." >&2
		[ "$waited" -ge "$quiet_wait" ] && { echo "  still busy after $quiet_wait s: going on" >&2; return 0; }
	done
}
