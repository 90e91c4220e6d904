#!/usr/bin/env bash
# Regenerates pg_dialer's prefix -> time-zone data from Debian's libphonenumber:
#
#   bash sql/install/data/refresh-number-timezones.sh
#
# Downloads (does not install) the package libphonenumber8-java of the machine's apt sources,
# takes com/google/i18n/phonenumbers/timezones/data/map_data out of its geocoder.jar (the C++
# libphonenumber-dev ships no time-zone data), decodes it (libphonenumber-timezones.py) and
# rewrites sql/install/data/number_timezones.txt, the map ("prefix|Zone&Zone", one a line): the
# map's one copy in the repository.  make builds from it the install script's part that loads
# it (sql/install/tools/number_timezones_part.sh), and so the install and update scripts.
# Then rebuild (make install) and run the tests.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && apt-get download libphonenumber8-java >/dev/null)
deb=$(ls "$tmp"/libphonenumber8-java_*.deb)
version=$(dpkg-deb -f "$deb" Version)
dpkg-deb -x "$deb" "$tmp/x"
python3 "$here/libphonenumber-timezones.py" "$tmp/x/usr/share/java/geocoder.jar" >"$tmp/map.txt"
[ "$(wc -l <"$tmp/map.txt")" -gt 1000 ] || { echo "refresh: decoded map is too small" >&2; exit 1; }

{
	echo "# libphonenumber prefix -> time-zone map, from Debian libphonenumber8-java $version"
	echo "# (geocoder.jar: com/google/i18n/phonenumbers/timezones/data/map_data)."
	echo "# Copyright (C) 2012 The Libphonenumber Authors. Apache License 2.0 (sql/install/data/LICENSE.libphonenumber)."
	echo "# Regenerate with: bash sql/install/data/refresh-number-timezones.sh"
	cat "$tmp/map.txt"
} >"$here/number_timezones.txt"

echo "number_timezones: $(grep -vc '^#' "$here/number_timezones.txt") prefixes from libphonenumber8-java $version"
