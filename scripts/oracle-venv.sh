#!/bin/sh
# scripts/oracle-venv.sh — the Python environment of the test oracles: the
# pinned packages of tests/oracle-requirements.txt in a virtualenv cached at
# $LF_ORACLE_VENV (default ~/.cache/lf/oracle-venv), rebuilt only when the
# requirements change.  Prints nothing when the cache is current.
# scripts/oracle-venv.sh REQUIREMENTS VENV does the same for other pins (the
# benchmarks' peers).
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
req=${1:-$root/tests/oracle-requirements.txt}
venv=${2:-${LF_ORACLE_VENV:-$HOME/.cache/lf/oracle-venv}}
stamp=$venv/.requirements
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
	exit 0
fi
echo "oracle-venv: creating $venv"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
