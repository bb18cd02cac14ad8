#!/bin/sh
# Every program has a man page that renders cleanly; the file formats and the
# suite have theirs; lf(7) lists every recipe key with its owner.
. tests/lib.sh

for src in tools/lf-*.c; do
	name=$(basename "$src" .c)
	check "$name has man/man1/$name.1" test -f "man/man1/$name.1"
	check "$name.1 renders without warnings" sh -c '
		out=$(MANWIDTH=80 man --warnings -E UTF-8 -l "man/man1/'"$name"'.1" 2>&1 >/dev/null); [ -z "$out" ] || { echo "$out"; exit 1; }'
	check "$name.1 documents every option of --help" sh -c '
		sed "s/\\\\//g" "man/man1/'"$name"'.1" >"'"$T"'/page"
		"'"$LF_BIN"'/'"$name"'" --help | grep -o -- "--[a-z][a-z-]*" | sort -u | while read o; do
			grep -q -E -- "$o(\$|[^a-z-])" "'"$T"'/page" || { echo "$o is not in the man page"; exit 1; }
		done'
done
for page in man/man5/lf-stream.5 man/man5/lf-shard.5 man/man7/lf.7; do
	check "$page renders without warnings" sh -c '
		out=$(MANWIDTH=80 man --warnings -E UTF-8 -l "'"$page"'" 2>&1 >/dev/null); [ -z "$out" ] || { echo "$out"; exit 1; }'
done
check "lf(7) lists every recipe key with its owning tool (scripts/gen-lf7-keys.sh)" sh -c '
	awk "/^\\.B /{k=\$2; getline; print k \" \" \$1}" man/man7/lf.7 | sed "s/\\\\-/-/g; s/;\$//" >"'"$T"'/man-keys"
	"'"$LF_BIN"'"/lf-inspect --recipe-keys | cut -f1,2 | tr "\t" " " >"'"$T"'/table-keys"
	grep -v "^[a-z0-9_]* lf" "'"$T"'/man-keys" >/dev/null; sort "'"$T"'/man-keys" | grep -F -x -f "'"$T"'/table-keys" | wc -l >"'"$T"'/n"
	[ "$(cat "'"$T"'/n")" = "$(wc -l <"'"$T"'/table-keys")" ] || { diff "'"$T"'/table-keys" "'"$T"'/man-keys" | head; exit 1; }'
