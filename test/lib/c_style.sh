#!/usr/bin/env bash
# The C style checks of src/, run by test/integration/c_style.test.js (and by hand:
# bash test/lib/c_style.sh [CHECK...]).  Each check prints what it found and the script exits
# non-zero when any check failed.  Checks (all by default):
#
#   indent    pgindent's formatting: every src/*.c and src/*.h is run through pg_bsd_indent
#             (Debian package pg-bsd-indent) with the options PostgreSQL's pgindent passes it,
#             and with a typedef list made the way pgindent's is (the DW_TAG_typedef names
#             of the objects' debug information, plus the typedefs declared in src/*.h); the
#             output must equal the file.  pgindent's own wrapper also applies a few fix-ups
#             before and after pg_bsd_indent; of those only the one that can matter here is
#             applied (a function's return type ends in " *", not "<tab> *").  It covers
#             what pgindent decides: tabs (4 columns) for indentation, declarations aligned,
#             braces on their own lines, block comments wrapped at 79 columns, the return
#             type of a definition on its own line.
#   layout    no trailing whitespace, no line indented with spaces (outside comments);
#             each file opens with a banner comment that names the file and carries the
#             line "Copyright (c) 2026, pg_dialer developers" (LICENSE's holder).
#   headers   one header per module: every src/X.h has its src/X.c, every src/X.c has its
#             src/X.h, includes it and declares there each function it does not keep
#             static; libcurl (curl/curl.h, curl_*(), CURL*) appears only in src/http.c.
#   warnings  every src/*.c compiles with PostgreSQL's flags plus -Wall -Wextra and no
#             warning located in src/ (PostgreSQL's own headers trigger -Wunused-parameter
#             in their inline functions; those are not ours and are not counted).
#
# Environment: DIALER_PGBIN (the PostgreSQL 15 bin directory, as everywhere in the tests);
# DIALER_C_STYLE_FIX=1 makes the indent check rewrite the files instead (as pgindent would);
# DIALER_C_STYLE_DIR=DIR checks DIR/src instead of the repository's (the test's own check
# that a bad file is caught).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "${DIALER_C_STYLE_DIR:-$repo}" || exit 2
PGBIN=${DIALER_PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
checks=${*:-indent layout headers warnings}

# pgindent's options for pg_bsd_indent (src/tools/pgindent/pgindent in PostgreSQL)
INDENT_OPTS="-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 -i4 -l79 -lp -lpl -nip -npro -sac -tpg -ts4"

work=$(mktemp -d "${TMPDIR:-/tmp}/dialer_c_style.XXXXXX") || exit 2
trap 'rm -rf "$work"' EXIT
failed=0

fail() {
	echo "c_style: $*"
	failed=$((failed + 1))
}

# Compiles every src/*.c into $work/obj with PostgreSQL's flags, debug information and
# -Wall -Wextra; the compiler's messages go to $work/cc.log.
compile() {
	local f cflags incdir curlflags
	[ -d "$work/obj" ] && return 0
	mkdir -p "$work/obj"
	cflags=$("$PG_CONFIG" --cflags) || return 1
	incdir=$("$PG_CONFIG" --includedir-server) || return 1
	curlflags=$(curl-config --cflags 2>/dev/null)
	: >"$work/cc.log"
	for f in src/*.c; do
		# shellcheck disable=SC2086
		gcc $cflags -g -Wall -Wextra -fPIC -Isrc -I"$incdir" $curlflags \
			-DPG_DIALER_VERSION='"check"' -c "$f" -o "$work/obj/$(basename "$f" .c).o" \
			>>"$work/cc.log" 2>&1 || { cat "$work/cc.log"; return 1; }
	done
}

check_indent() {
	local f out
	if ! command -v pg_bsd_indent >/dev/null; then
		fail "pg_bsd_indent is not installed (Debian package pg-bsd-indent; test/install-deps.sh installs it)"
		return
	fi
	compile || { fail "src/ does not compile"; return; }
	# the typedef names, as pgindent gathers them: from the debug information of the objects
	objdump -W --dwarf=info "$work"/obj/*.o 2>/dev/null |
		awk '/DW_TAG_typedef/ { t = 1; next } t && /DW_AT_name/ { print $NF; t = 0 }' >"$work/typedefs.raw"
	# and those src/*.h declare (a type no object uses yet is still a type)
	sed -n -E 's/^\}[[:space:]]*([A-Za-z_][A-Za-z0-9_]*);.*/\1/p; s/^typedef[[:space:]].*[[:space:]*]([A-Za-z_][A-Za-z0-9_]*);.*/\1/p' \
		src/*.h >>"$work/typedefs.raw"
	sort -u "$work/typedefs.raw" >"$work/typedefs.list"
	for f in src/*.c src/*.h; do
		out="$work/$(basename "$f")"
		# shellcheck disable=SC2086
		if ! pg_bsd_indent $INDENT_OPTS -U"$work/typedefs.list" "$f" "$out" 2>"$out.err"; then
			fail "$f: pg_bsd_indent failed: $(cat "$out.err")"
			continue
		fi
		# pgindent's fix-up: a single space before the '*' of a function's return type
		sed -i -E 's/^([A-Za-z_][^[:space:]]*)[[:space:]]+\*$/\1 */' "$out"
		if [ "${DIALER_C_STYLE_FIX:-0}" = 1 ]; then
			cmp -s "$f" "$out" || { cp "$out" "$f" && echo "c_style: reformatted $f"; }
		elif ! diff -u "$f" "$out" >"$out.diff"; then
			fail "$f is not as pgindent would leave it:"
			sed "s|$work/||" "$out.diff"
		fi
	done
}

check_layout() {
	local f
	for f in src/*.c src/*.h; do
		grep -nE '[[:space:]]+$' "$f" | sed "s|^|$f:|; s|$| <- trailing whitespace|" | grep . && fail "$f has trailing whitespace"
		# a line indented with spaces: not a comment's " * " continuation, not inside one
		awk -v f="$f" '
			/\/\*/ { c = 1 }
			!c && /^ +[^ *]/ { print f ":" NR ": indented with spaces: " $0; bad = 1 }
			/\*\// { c = 0 }
			END { exit bad }' "$f" || fail "$f has lines indented with spaces"
		head -n 1 "$f" | grep -qx '/\*-*' || fail "$f does not open with a banner comment"
		sed -n '2,6p' "$f" | grep -qE "^ \* $(basename "$f")\$" || fail "$f: the banner does not name the file"
		awk '/^ \*-+$/ { exit } { print }' "$f" | grep -q '^ \* Copyright (c) 2026, pg_dialer developers$' ||
			fail "$f: the banner has no line 'Copyright (c) 2026, pg_dialer developers'"
	done
}

check_headers() {
	local f base fn
	for f in src/*.h; do
		base=${f%.h}
		[ -e "$base.c" ] || fail "$f is the header of no file ($base.c does not exist)"
	done
	for f in src/*.c; do
		base=${f%.c}
		[ -e "$base.h" ] || fail "$f has no header $base.h declaring what it offers"
		grep -q "#include \"$(basename "$base").h\"" "$f" || fail "$f does not include its own header"
		# every function X.c defines for others (not static) is declared in X.h
		for fn in $(awk 'prev !~ /static/ && /^[_a-z][A-Za-z0-9_]*\(/ { sub(/\(.*/, ""); print } { prev = $0 }' "$f"); do
			[ -e "$base.h" ] && ! grep -qE "[^A-Za-z0-9_]$fn\(" "$base.h" && fail "$f defines $fn, which $base.h does not declare"
		done
	done
	grep -nE 'curl/curl\.h|\bcurl_[a-z_]+\(|\bCURL[A-Za-z_]*\b' src/*.c src/*.h | grep -v '^src/http\.c:' &&
		fail "libcurl is used outside src/http.c (above)"
}

check_warnings() {
	compile || { fail "src/ does not compile"; return; }
	if grep -E '^src/[^:]+:[0-9]+:[0-9]+: (warning|error)' "$work/cc.log"; then
		fail "-Wall -Wextra warnings in src/ (above)"
	fi
}

for c in $checks; do
	case "$c" in
		indent | layout | headers | warnings) "check_$c" ;;
		*) fail "unknown check $c" ;;
	esac
done
if [ "$failed" -gt 0 ]; then
	echo "c_style: $failed problem(s)"
	exit 1
fi
echo "c_style: $checks: clean"
