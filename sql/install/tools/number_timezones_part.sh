#!/bin/sh
# Writes, on standard output, the install script's part that loads libphonenumber's prefix ->
# time-zone map into dialer.number_timezones, from the one copy of the map kept in the
# repository (sql/install/data/number_timezones.txt: "prefix|Zone&Zone" lines, # comments).
# Run by make (the part is built, not committed):
#
#   sh sql/install/tools/number_timezones_part.sh sql/install/data/number_timezones.txt
set -eu
map=$1
version=$(sed -n 's/^# .*from Debian libphonenumber8-java \([^ ]*\)$/\1/p' "$map")
cat <<HEAD
/*
 * pg_dialer: libphonenumber's prefix -> time-zone data (dialer.number_timezones).
 * Built by make from sql/install/data/number_timezones.txt (sql/install/tools/number_timezones_part.sh).
 *
 * Copyright (c) 2026, pg_dialer developers (the data: see its own notice below)
 */
-- BEGIN number_timezones data (built from sql/install/data/number_timezones.txt: do not edit)
-- libphonenumber's prefix -> time-zone map, Debian libphonenumber8-java $version.
-- Copyright (C) 2012 The Libphonenumber Authors; Apache License 2.0, see sql/install/data/LICENSE.libphonenumber.
TRUNCATE dialer.number_timezones;
INSERT INTO dialer.number_timezones (prefix, zones)
SELECT split_part(l, '|', 1), string_to_array(split_part(l, '|', 2), '&')
  FROM regexp_split_to_table(\$map\$
HEAD
grep -v '^#' "$map"
cat <<'TAIL'
$map$, '\n') l
 WHERE l <> '';
-- END number_timezones data
TAIL
