-- pgTAP: psql explains everything.  Every object of the extension (found through pg_depend,
-- so a new one is checked without being listed here) has a COMMENT: relations (tables,
-- views, sequences), the columns of its tables, views and composite types, functions, types
-- and schemas, and the schema dialer the extension lives in.  Then proof that the check
-- bites: an uncommented table, column, function and sequence added to the extension are
-- reported.  Self-contained: runs in a transaction that is rolled back.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS pg_dialer;

SELECT plan(9);

-- every object of the extension that can carry a comment: kind, name, comment
CREATE TEMP VIEW extension_objects AS
WITH ext AS (
	SELECT oid, extnamespace FROM pg_extension WHERE extname = 'pg_dialer'
), members AS (
	SELECT d.classid, d.objid
	  FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rels AS (
	-- relations of the extension, and the relations of its composite types
	SELECT c.oid, c.relkind
	  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	UNION
	SELECT c.oid, c.relkind
	  FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
	  JOIN pg_class c ON c.oid = t.typrelid
)
SELECT CASE r.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'view'
					  ELSE 'table' END AS kind,
	   r.oid::regclass::text AS name, obj_description(r.oid, 'pg_class') AS comment
  FROM rels r WHERE r.relkind <> 'c'
UNION ALL
SELECT 'column', format('%s.%I', r.oid::regclass, a.attname), col_description(r.oid, a.attnum)
  FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
UNION ALL
SELECT 'function', p.oid::regprocedure::text, obj_description(p.oid, 'pg_proc')
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'type', t.oid::regtype::text, obj_description(t.oid, 'pg_type')
  FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'schema', quote_ident(n.nspname), obj_description(n.oid, 'pg_namespace')
  FROM pg_namespace n
 WHERE n.oid IN (SELECT objid FROM members WHERE classid = 'pg_namespace'::regclass)
	OR n.oid = (SELECT extnamespace FROM ext)
UNION ALL
-- anything else that is a member (operators, casts, ...): its own catalog's comment
SELECT 'other', pg_describe_object(m.classid, m.objid, 0), obj_description(m.objid, m.classid::regclass::name)
  FROM members m
 WHERE m.classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass,
						 'pg_namespace'::regclass);

CREATE TEMP VIEW uncommented AS
SELECT kind, name FROM extension_objects WHERE coalesce(btrim(comment), '') = '' ORDER BY kind, name;

-- the check sees what it must (so an empty result means something)
SELECT cmp_ok((SELECT count(*)::int FROM extension_objects WHERE kind = 'column' AND name LIKE 'dialer.scheduled_calls.%'),
			  '>=', 25, 'the check covers every column of scheduled_calls');
SELECT ok(EXISTS (SELECT 1 FROM extension_objects WHERE kind = 'sequence' AND name = 'dialer.scheduled_calls_id_seq')
		  AND EXISTS (SELECT 1 FROM extension_objects WHERE kind = 'view' AND name = 'dialer.campaign_schedules')
		  AND EXISTS (SELECT 1 FROM extension_objects WHERE kind = 'schema' AND name = 'dialer')
		  AND EXISTS (SELECT 1 FROM extension_objects WHERE kind = 'schema' AND name = 'dialer_api')
		  AND EXISTS (SELECT 1 FROM extension_objects WHERE kind = 'column' AND name = 'dialer.campaign_source_row.phone'),
		  'the check covers sequences, views, both schemas and the columns of composite types');

-- THE test: nothing of the extension is left unexplained (lists what is, on failure)
SELECT is_empty('SELECT kind || '' '' || name FROM uncommented',
				'every relation, column, sequence, view, function, type and schema of pg_dialer has a COMMENT');

-- the schema, as psql \dn+ shows it
SELECT isnt(obj_description('dialer'::regnamespace, 'pg_namespace'), NULL, 'schema dialer is commented');

-- the check bites: uncommented objects added to the extension are reported by name
CREATE TABLE dialer.tap_uncommented (x int, y int);
COMMENT ON TABLE dialer.tap_uncommented IS 'test table';
COMMENT ON COLUMN dialer.tap_uncommented.x IS 'test column';
CREATE SEQUENCE dialer.tap_uncommented_seq;
CREATE FUNCTION dialer.tap_uncommented_f() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE VIEW dialer.tap_uncommented_v AS SELECT 1 AS one;
ALTER EXTENSION pg_dialer ADD TABLE dialer.tap_uncommented;
ALTER EXTENSION pg_dialer ADD SEQUENCE dialer.tap_uncommented_seq;
ALTER EXTENSION pg_dialer ADD FUNCTION dialer.tap_uncommented_f();
ALTER EXTENSION pg_dialer ADD VIEW dialer.tap_uncommented_v;
SELECT ok(('column', 'dialer.tap_uncommented.y') IN (SELECT kind, name FROM uncommented), 'an uncommented column is reported');
SELECT ok(('sequence', 'dialer.tap_uncommented_seq') IN (SELECT kind, name FROM uncommented), 'an uncommented sequence is reported');
SELECT ok(('function', 'dialer.tap_uncommented_f()') IN (SELECT kind, name FROM uncommented), 'an uncommented function is reported');
SELECT ok(('view', 'dialer.tap_uncommented_v') IN (SELECT kind, name FROM uncommented)
		  AND ('column', 'dialer.tap_uncommented_v.one') IN (SELECT kind, name FROM uncommented),
		  'an uncommented view and its column are reported');
SELECT ok(('table', 'dialer.tap_uncommented') NOT IN (SELECT kind, name FROM uncommented)
		  AND ('column', 'dialer.tap_uncommented.x') NOT IN (SELECT kind, name FROM uncommented),
		  'a commented table and column are not');

SELECT * FROM finish();
ROLLBACK;
