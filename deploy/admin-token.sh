#!/usr/bin/env bash
# Mints a token (an HS256 JSON Web Token) for pg_dialer's admin API and dashboard, signed with
# the admin PostgREST's jwt-secret, read from a file.  Needs only bash, coreutils and openssl.
#
#   deploy/admin-token.sh dialer_viewer --sub ann@example.com --expires 8h
#   deploy/admin-token.sh dialer_operator --sub ops@example.com --expires 30m
#   deploy/admin-token.sh dialer_frontend --sub user-42 --purpose qualification --expires 15m
#
# Prints the token (and nothing else) on standard output, and on standard error for whom it
# is and until when it is valid.  The secret file is the one PostgREST reads
# (DIALER_ADMIN_JWT_SECRET=@/etc/pg_dialer/admin_jwt_secret, see doc/admin.md): --secret-file,
# else $DIALER_ADMIN_JWT_SECRET_FILE, else /etc/pg_dialer/admin_jwt_secret.  One newline at its
# end is not part of the secret (PostgREST drops it too).
#
# The secret never appears in a command line (where ps would show it): the HMAC is computed
# here, from the key's bytes, with openssl computing plain SHA-256 digests of standard input.
set -euo pipefail

readonly PROG=admin-token.sh
readonly MAX_SECONDS=$((366 * 86400))

usage() {
	cat <<'USAGE'
usage: deploy/admin-token.sh ROLE [--sub WHO] [--purpose PURPOSE] [--expires DURATION] [--secret-file FILE]

  ROLE           dialer_viewer (reads), dialer_operator (reads and acts) or dialer_frontend
                 (POST /rpc/frontend_enqueue only)
  --sub WHO      who the token is for (the dashboard shows it); required for dialer_frontend,
                 where it is the user whose calls are rate limited
  --purpose P    dialer_frontend only, required: a name of dialer.frontend_purposes
  --expires D    how long the token is valid: a number and s, m, h or d (default 8h, at most 366d)
  --secret-file F  the admin PostgREST's JWT secret (default $DIALER_ADMIN_JWT_SECRET_FILE,
                 else /etc/pg_dialer/admin_jwt_secret)
USAGE
}

# die MESSAGE [HINT]: the error (and what to do) on standard error, exit status 2
die() {
	echo "$PROG: $1" >&2
	[ $# -lt 2 ] || echo "$PROG: hint: $2" >&2
	exit 2
}

# b64url: standard input in unpadded base64url (RFC 7515), on one line
b64url() {
	basenc --base64url -w0 | tr -d '='
}

# json_string TEXT: TEXT as a JSON string (backslash and double quote escaped; control
# characters were refused before)
json_string() {
	local s=${1//\\/\\\\}
	printf '"%s"' "${s//\"/\\\"}"
}

# escapes HEX...: the bytes given in hex as escapes (\xHH...), which printf %b prints raw
escapes() {
	printf '\\x%s' "$@"
}

# hmac_sha256 FILE MESSAGE: base64url of HMAC-SHA256 (RFC 2104) of MESSAGE keyed with the
# bytes of FILE (less one final newline)
hmac_sha256() {
	local file=$1 msg=$2 b i ipad='' opad='' inner
	local -a key
	# shellcheck disable=SC2207
	key=($(od -An -v -tx1 <"$file"))
	if [ "${key[${#key[@]}-1]}" = 0a ]; then unset 'key[${#key[@]}-1]'; fi
	# a key longer than SHA-256's block (64 bytes) is replaced by its digest
	if [ ${#key[@]} -gt 64 ]; then
		# shellcheck disable=SC2207
		key=($(printf '%b' "$(escapes "${key[@]}")" | openssl dgst -sha256 -binary | od -An -v -tx1))
	fi
	for ((i = 0; i < 64; i++)); do
		b=$((16#${key[i]:-00}))
		ipad+=$(printf '\\x%02x' $((b ^ 0x36)))
		opad+=$(printf '\\x%02x' $((b ^ 0x5c)))
	done
	inner=$({ printf '%b' "$ipad"; printf '%s' "$msg"; } | openssl dgst -sha256 -binary | od -An -v -tx1)
	# shellcheck disable=SC2086
	{ printf '%b' "$opad"; printf '%b' "$(escapes $inner)"; } | openssl dgst -sha256 -binary | b64url
}

# the arguments
role=''
sub=''
purpose=''
expires=8h
have_sub=0
have_purpose=0
secret_file=${DIALER_ADMIN_JWT_SECRET_FILE:-/etc/pg_dialer/admin_jwt_secret}
while [ $# -gt 0 ]; do
	opt=$1
	case "$opt" in
	-h | --help)
		usage
		exit 0
		;;
	--sub=* | --purpose=* | --expires=* | --secret-file=*)
		set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
		continue
		;;
	--sub | --purpose | --expires | --secret-file)
		[ $# -ge 2 ] || die "$opt needs a value" "see deploy/admin-token.sh --help"
		case "$opt" in
		--sub) sub=$2 have_sub=1 ;;
		--purpose) purpose=$2 have_purpose=1 ;;
		--expires) expires=$2 ;;
		--secret-file) secret_file=$2 ;;
		esac
		shift 2
		;;
	-*)
		die "unknown option $opt" "see deploy/admin-token.sh --help"
		;;
	*)
		[ -z "$role" ] || die "one role only (got $role and $opt)" "see deploy/admin-token.sh --help"
		role=$opt
		shift
		;;
	esac
done

case "$role" in
dialer_viewer | dialer_operator | dialer_frontend) ;;
'') die "no role given" "name one of dialer_viewer, dialer_operator, dialer_frontend" ;;
*) die "unknown role '$role'" "name one of dialer_viewer, dialer_operator, dialer_frontend (deploy/admin_roles.sql)" ;;
esac

if [ "$have_sub" = 1 ]; then
	[ -n "$sub" ] || die "--sub is empty" "give who the token is for, e.g. --sub ann@example.com"
	[ ${#sub} -le 200 ] || die "--sub is longer than 200 characters"
	if [[ "$sub" =~ [[:cntrl:]] ]]; then die "--sub contains a control character"; fi
fi
if [ "$role" = dialer_frontend ]; then
	[ "$have_sub" = 1 ] || die "a dialer_frontend token needs --sub" \
		"--sub is the signed-in user of your application, e.g. --sub user-42 (one call per user per the purpose's min_interval)"
	[ "$have_purpose" = 1 ] || die "a dialer_frontend token needs --purpose" \
		"--purpose names a row of dialer.frontend_purposes, e.g. --purpose qualification"
	[[ "$purpose" =~ ^[A-Za-z0-9_.-]{1,63}$ ]] || die "invalid --purpose '$purpose'" \
		"a purpose name is 1 to 63 letters, digits, _ . or - (a name of dialer.frontend_purposes)"
elif [ "$have_purpose" = 1 ]; then
	die "--purpose is for dialer_frontend tokens only" "leave it out for $role"
fi

[[ "$expires" =~ ^([0-9]{1,9})([smhd])$ ]] || die "invalid --expires '$expires'" \
	"a number and a unit: s, m, h or d, e.g. --expires 8h"
n=$((10#${BASH_REMATCH[1]}))
case "${BASH_REMATCH[2]}" in
s) ttl=$n ;;
m) ttl=$((n * 60)) ;;
h) ttl=$((n * 3600)) ;;
d) ttl=$((n * 86400)) ;;
esac
[ "$ttl" -gt 0 ] || die "--expires $expires: a token must be valid for some time"
[ "$ttl" -le "$MAX_SECONDS" ] || die "--expires $expires is longer than 366 days" \
	"mint tokens that expire, and mint new ones (a token cannot be revoked before its expiry, short of changing the secret)"

[ -e "$secret_file" ] || die "secret file $secret_file does not exist" \
	"create it as README says (Admin API and dashboard), or name it with --secret-file"
if [ ! -f "$secret_file" ] || [ ! -r "$secret_file" ]; then
	die "cannot read the secret file $secret_file" "run as a user who may read it (root, or the admin PostgREST's user)"
fi
size=$(wc -c <"$secret_file")
[ "$(tail -c 1 "$secret_file" | od -An -tx1 | tr -d ' ')" != 0a ] || size=$((size - 1))
[ "$size" -ge 32 ] || die "the secret in $secret_file is $size characters long: PostgREST 12 needs at least 32" \
	"make a random one: openssl rand -base64 48 | tr -d '\\n' > $secret_file (then restart the admin PostgREST)"

# the token
now=$(date +%s)
exp=$((now + ttl))
claims="{\"role\":\"$role\""
[ "$have_sub" = 0 ] || claims+=",\"sub\":$(json_string "$sub")"
[ "$have_purpose" = 0 ] || claims+=",\"purpose\":\"$purpose\""
claims+=",\"iat\":$now,\"exp\":$exp}"
signing_input="$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | b64url).$(printf '%s' "$claims" | b64url)"
printf '%s.%s\n' "$signing_input" "$(hmac_sha256 "$secret_file" "$signing_input")"
echo "$PROG: $role token${sub:+ for $sub}${purpose:+ (purpose $purpose)}, valid until $(date -u -d "@$exp" '+%Y-%m-%d %H:%M:%S UTC')" >&2
