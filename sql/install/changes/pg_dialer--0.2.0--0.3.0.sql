-- The change file of the update from 0.2.0 to 0.3.0: what sql/install/tools/draft_update.py
-- cannot know (see its opening comment).  make writes sql/install/pg_dialer--0.2.0--0.3.0.sql
-- from this file, the released 0.2.0 install script (sql/install/released/) and the current
-- one built from sql/install/parts/; the update script itself is never edited or committed.
-- @header
/*
 * pg_dialer: update from 0.2.0 to 0.3.0 (ALTER EXTENSION pg_dialer UPDATE TO '0.3.0').
 *
 * Everything 0.3.0 changed in sql/install/parts/ since 0.2.0, as statements that turn a 0.2.0
 * install into exactly what a fresh 0.3.0 install is: test/integration/upgrade.test.js
 * updates an installed 0.2.0 (and a 0.1.0, through 0.2.0) and compares the catalogs with a
 * fresh install's.
 *
 * Written by make (sql/install/tools/draft_update.py) from the change file
 * sql/install/changes/pg_dialer--0.2.0--0.3.0.sql: edit that file and sql/install/parts/.
 *
 * Runs in one transaction with the extension's schema as search_path; rows are kept.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_dialer UPDATE TO '0.3.0'" to load this file. \quit
-- @replace function dialer.apply_reconciliation
-- a lookup's answer is read in C by its provider's kind: the function takes pg_dialer's
-- report (jsonb) instead of the answer's HTTP body and error
DROP FUNCTION dialer.apply_reconciliation(bigint, text, int, text, text);
-- @replace function dialer.apply_search
-- a search's answer is read in C by its provider's kind: the function takes pg_dialer's
-- report (jsonb) instead of the answer's HTTP body and error
DROP FUNCTION dialer.apply_search(bigint, jsonb, int, text, text);
