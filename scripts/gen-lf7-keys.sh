#!/bin/sh
# scripts/gen-lf7-keys.sh — rewrite the RECIPE KEYS section of man/man7/lf.7
# from the owner table (libcommon/recipe_keys.c, printed by --recipe-keys).
# Run after changing the table; tests/tools/man.sh checks the page is current.
set -e
cd "$(dirname "$0")/.."
bin=${LF_BIN:-bin}
page=man/man7/lf.7
tmp=$page.tmp.$$
trap 'rm -f "$tmp"' EXIT
{
	sed '/^\.\\" BEGIN RECIPE KEYS/q' "$page"
	"$bin/lf-inspect" --recipe-keys | awk -F'\t' '
	function roff(s) { gsub(/\\/, "\\e", s); gsub(/-/, "\\-", s); return s }
	{
		printf ".TP\n.B %s\n", $1
		line = roff($2)
		if ($3 != "-") line = line "; also read by " roff($3)
		status = $4 == "active" ? "" : $4 == "planned" ? "not built yet" : $4 == "no-effect" ? "no effect" : "not offered"
		if (status != "") line = line " (" status ")"
		if ($5 != "-") line = line ": " roff($5)
		print line
	}'
	sed -n '/^\.\\" END RECIPE KEYS/,$p' "$page"
} >"$tmp"
mv "$tmp" "$page"
trap - EXIT
