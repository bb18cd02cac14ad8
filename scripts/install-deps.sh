#!/bin/sh
# scripts/install-deps.sh — install every Debian package lf's build and tests
# need (the static-library packages too, for `make STATIC=1`), then the
# Python oracle environment (scripts/oracle-venv.sh).  Slurm and munge serve
# the tests' one-node cluster (tests/slurm-local.sh); libpmix-dev holds the
# libpmix.so Slurm's pmix plugin opens.
# Idempotent: packages already installed are left alone.  Run as root (or
# with sudo available).
set -e

PACKAGES="build-essential pkg-config make
libmsgpack-dev libarchive-dev libyaml-dev libjansson-dev libutf8proc-dev libxxhash-dev libpcre2-dev libpng-dev
libopenblas-openmp-dev libgfortran-12-dev libopenmpi-dev openmpi-bin
munge slurmctld slurmd slurm-client slurm-wlm-basic-plugins libpmix-dev
libacl1-dev libzstd-dev liblz4-dev libbz2-dev liblzma-dev zlib1g-dev nettle-dev libxml2-dev
python3 python3-venv man-db groff-base tar gzip xz-utils"

missing=""
for p in $PACKAGES; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	echo "install-deps: installing$missing"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# OpenBLAS: the OpenMP build (the pthread build oversubscribes cores under OpenMP).
if command -v update-alternatives >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ]; then
	update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep -q "Value: .*openblas-openmp" ||
		${SUDO:-} update-alternatives --set libblas.so.3-x86_64-linux-gnu \
			/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 >/dev/null 2>&1 || true
fi
sh "$(dirname "$0")/oracle-venv.sh"
