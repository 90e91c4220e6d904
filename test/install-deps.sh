#!/usr/bin/env bash
# Installs what pg_dialer's build and test suite need on Debian 12 (with what `make deb`
# needs to build the Debian package: postgresql-server-dev-all for pg_buildext, debhelper,
# build-essential), then the pinned npm test tools.  Idempotent and quick when everything is
# present: apt is only touched (apt-get update, then apt-get install of the missing
# packages) when a package is missing, and `npm ci` only runs when package-lock.json
# changed since the last run.
#
#   bash test/install-deps.sh          (as root, or as a user with sudo)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(
	postgresql-15
	postgresql-server-dev-15
	libcurl4-openssl-dev
	postgresql-15-cron
	postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl
	make
	gcc
	python3
	postgresql-server-dev-all
	debhelper
	build-essential
	pg-bsd-indent
	nginx
	chromium
	prometheus-postgres-exporter
)

say() { echo "install-deps: $*"; }

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]
}

# node 18 or newer (node --test with reporters); Debian 12 ships 18.
node_ok() {
	command -v node >/dev/null 2>&1 || return 1
	local major
	major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
	[ "$major" -ge 18 ] 2>/dev/null
}

missing=()
for p in "${packages[@]}"; do
	installed "$p" || missing+=("$p")
done
if ! node_ok; then
	missing+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
	missing+=(npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		sudo=()
	elif command -v sudo >/dev/null 2>&1; then
		sudo=(sudo)
	else
		say "missing packages (${missing[*]}) and not root: run this script as root" >&2
		exit 1
	fi
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
	# Packages with a service (nginx, postgresql, prometheus-postgres-exporter) must not start it: the tests run their
	# own servers on 127.0.0.1 and nothing may listen on the machine's other addresses.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		trap '"${sudo[@]}" rm -f "$policy"' EXIT
	fi
	"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
	node_ok || { say "node 18 or newer is required; found $(node --version 2>/dev/null || echo none)" >&2; exit 1; }
else
	say "system packages present"
fi

# The npm test tools (pg, twilio, Prism, PostgREST), pinned by package-lock.json.
if [ ! -f "$repo/package.json" ] || [ ! -f "$repo/package-lock.json" ]; then
	say "package.json and package-lock.json are required in $repo" >&2
	exit 1
fi
stamp="$repo/node_modules/.pg_dialer-deps"
want=$(cat "$repo/package.json" "$repo/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	say "node modules up to date"
else
	say "npm ci"
	(cd "$repo" && npm ci --no-audit --no-fund --loglevel=error)
	echo "$want" >"$stamp"
fi
