#!/bin/sh
# tests/slurm-local.sh — a throw-away one-node Slurm cluster on localhost, for
# tests that run bin/lf-train under srun (srun --mpi=pmix).  Needs root and
# Debian 12's slurm and munge packages (scripts/install-deps.sh installs
# them); uses no systemd, no cgroups, nothing in /etc: config, munge key and
# socket, state, pid and log files all live in DIR.
#
#   tests/slurm-local.sh start DIR  write DIR/slurm.conf and a munge key, start munged,
#                                   slurmctld and slurmd, wait (30 s at most) until the
#                                   node is idle, then print one line to eval:
#                                   export SLURM_CONF=DIR/slurm.conf
#   tests/slurm-local.sh stop DIR   cancel any jobs left, then stop the daemons named
#                                   by the pid files in DIR, and nothing else; safe to
#                                   rerun
#
# Example:  d=$(mktemp -d); env=$(tests/slurm-local.sh start "$d") || exit 1
#           eval "$env"; srun --mpi=pmix -n 2 bin/lf-train ...
#           tests/slurm-local.sh stop "$d"; rm -rf "$d"
# Debian's Open MPI needs --mpi=pmix: plain srun (MpiDefault=none) and --mpi=pmi2
# make MPI_Init fail.  Ports: 16817 and 16818, or N and N+1 with SLURM_LOCAL_PORT=N.
# The node has nproc CPUs (2 at least), or N with SLURM_LOCAL_CPUS=N.

SBIN=/usr/sbin

die() {
	echo "slurm-local: $*" >&2
	exit 1
}

usage() {
	echo "usage: $0 start DIR | stop DIR" >&2
	exit 2
}

# ours PIDFILE: the pid in PIDFILE is a live process started for this DIR
# (its command line names DIR), so a recycled pid is never touched
ours() {
	[ -s "$1" ] || return 1
	p=$(cat "$1" 2>/dev/null)
	case $p in '' | *[!0-9]*) return 1 ;; esac
	kill -0 "$p" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$DIR/"
}

# alive PIDFILE: the process just started (its pid in PIDFILE) still runs.
# Not ours(): between fork and exec the child's command line is still this
# script's, which does not name DIR/, so ours() would call it gone.
alive() {
	kill -0 "$(cat "$1" 2>/dev/null)" 2>/dev/null
}

# stop_all NAME...: TERM the daemons named by DIR/NAME.pid, wait up to 10 s
# for them to exit, KILL what is left, remove the pid files
stop_all() {
	left=
	for n in "$@"; do
		if ours "$DIR/$n.pid"; then
			kill -TERM "$(cat "$DIR/$n.pid")" 2>/dev/null
			left="$left $n"
		fi
	done
	i=0
	while [ -n "$left" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
		still=
		for n in $left; do
			ours "$DIR/$n.pid" && still="$still $n"
		done
		left=$still
	done
	for n in $left; do
		ours "$DIR/$n.pid" && kill -KILL "$(cat "$DIR/$n.pid")" 2>/dev/null
	done
	for n in "$@"; do
		rm -f "$DIR/$n.pid"
	done
}

# fail MESSAGE: stop what start has started so far, then die
fail() {
	do_stop
	die "$*"
}

do_start() {
	[ "$(id -u)" = 0 ] || die "start must run as root"
	for b in munged slurmctld slurmd; do
		[ -x "$SBIN/$b" ] || die "$SBIN/$b missing (scripts/install-deps.sh installs it)"
	done
	command -v sinfo >/dev/null || die "sinfo missing (scripts/install-deps.sh installs it)"
	mkdir -p "$DIR" || die "cannot create $DIR"
	DIR=$(cd "$DIR" && pwd -P) || die "cannot enter $DIR"
	for d in munged slurmctld slurmd; do
		ours "$DIR/$d.pid" && die "$d already running for $DIR; run: $0 stop $DIR"
	done
	mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/tmp" "$DIR/log" ||
		die "cannot create directories in $DIR"
	# munged refuses a key or socket directory that others may write to
	chmod 755 "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log"
	chmod 1777 "$DIR/tmp"
	key=$DIR/munge/munge.key
	sock=$DIR/munge/munge.socket
	if [ ! -s "$key" ]; then
		(umask 077 && dd if=/dev/urandom of="$key" bs=1024 count=1 2>/dev/null) ||
			die "cannot write $key"
	fi
	chmod 400 "$key"

	host=$(hostname -s)
	# GNU nproc obeys OMP_NUM_THREADS, which tests often set to 1
	cpus=${SLURM_LOCAL_CPUS:-$(unset OMP_NUM_THREADS OMP_THREAD_LIMIT; nproc)}
	case $cpus in '' | *[!0-9]*) die "SLURM_LOCAL_CPUS must be a number" ;; esac
	[ "$cpus" -ge 2 ] || cpus=2 # so that srun -n 2 runs on a one-core machine too
	port=${SLURM_LOCAL_PORT:-16817}
	case $port in '' | *[!0-9]*) die "SLURM_LOCAL_PORT must be a number" ;; esac
	conf=$DIR/slurm.conf
	: >"$DIR/plugstack.conf"
	cat >"$conf" <<EOF || die "cannot write $conf"
# Throw-away test cluster written by tests/slurm-local.sh
ClusterName=lftest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
TmpFS=$DIR/tmp
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
PlugStackConfig=$DIR/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=512 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
	chmod 644 "$conf" "$DIR/plugstack.conf"

	# each daemon runs in the foreground (so $! is its pid); what it writes to
	# stderr goes to log/NAME.out, its own log (slurm only) to log/NAME.log
	# (munged writes a pid file of its own: not DIR/munged.pid, which
	# ours() reads while munged would be rewriting it)
	"$SBIN/munged" -F --force --key-file="$key" --socket="$sock" \
		--pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
		--seed-file="$DIR/munge/munged.seed" </dev/null >>"$DIR/log/munged.out" 2>&1 &
	echo $! >"$DIR/munged.pid"
	i=0
	until [ -S "$sock" ]; do
		alive "$DIR/munged.pid" || fail "munged exited: $(tail -n 3 "$DIR/log/munged.out" "$DIR/log/munged.log" 2>&1)"
		[ $i -ge 100 ] && fail "munged made no socket $sock in 10 s"
		sleep 0.1
		i=$((i + 1))
	done

	SLURM_CONF=$conf
	export SLURM_CONF
	"$SBIN/slurmctld" -D -i -f "$conf" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 &
	echo $! >"$DIR/slurmctld.pid"
	"$SBIN/slurmd" -D -N "$host" -f "$conf" </dev/null >>"$DIR/log/slurmd.out" 2>&1 &
	echo $! >"$DIR/slurmd.pid"

	# wait (30 s at most) for the node to be idle
	i=0
	while :; do
		alive "$DIR/slurmctld.pid" || fail "slurmctld exited: $(tail -n 3 "$DIR/log/slurmctld.out" 2>&1)"
		alive "$DIR/slurmd.pid" || fail "slurmd exited: $(tail -n 3 "$DIR/log/slurmd.out" 2>&1)"
		st=$(sinfo -h -N -n "$host" -o %T 2>/dev/null)
		[ "$st" = idle ] && break
		[ $i -ge 300 ] && fail "node $host not idle after 30 s (state: ${st:-none}); see $DIR/log"
		sleep 0.1
		i=$((i + 1))
	done
	echo "export SLURM_CONF=$conf"
}

do_stop() {
	[ -d "$DIR" ] || return 0
	DIR=$(cd "$DIR" && pwd -P) || return 0
	conf=$DIR/slurm.conf
	# cancel leftover jobs first (10 s at most), so no slurmstepd outlives slurmd
	if ours "$DIR/slurmctld.pid" && ours "$DIR/slurmd.pid" && [ -f "$conf" ]; then
		jobs=$(SLURM_CONF=$conf squeue -h -o %i 2>/dev/null)
		if [ -n "$jobs" ]; then
			# shellcheck disable=SC2086
			SLURM_CONF=$conf scancel $jobs 2>/dev/null
			i=0
			while [ -n "$(SLURM_CONF=$conf squeue -h -o %i 2>/dev/null)" ] && [ $i -lt 100 ]; do
				sleep 0.1
				i=$((i + 1))
			done
		fi
	fi
	stop_all slurmd slurmctld munged
	return 0
}

case ${1:-} in
start)
	[ $# -eq 2 ] || usage
	DIR=$2
	do_start
	;;
stop)
	[ $# -eq 2 ] || usage
	DIR=$2
	do_stop
	;;
*) usage ;;
esac
