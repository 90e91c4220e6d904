-- The catalog of an installed extension, normalized to one text line per fact, for comparing
-- two installs (e.g. an updated 0.1.0 against a fresh 0.2.0: test/integration/upgrade.test.js).
-- Names, never OIDs; ordered; data (rows, sequence values) left out.  Covers: every member
-- object (pg_depend), the extension's schema, relations (kind, options, persistence, RLS, ACL,
-- comment), columns (order, type, NOT NULL, default, identity, generated, collation, ACL,
-- comment), constraints, indexes, triggers, policies, rules, view definitions, sequences'
-- parameters, functions (full definition, ACL, comment), types and domains, schemas (ACL,
-- comment), and the extension's own configuration (config tables and their conditions).
--
-- Parameter: :'extname' (psql), or $1 when run as a prepared statement.
WITH ext AS (
	SELECT e.oid, e.extname, e.extnamespace, e.extconfig, e.extcondition
	  FROM pg_extension e WHERE e.extname = $1
), members AS (
	SELECT d.classid, d.objid
	  FROM pg_depend d, ext
	 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
), rels AS (
	SELECT c.oid FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	UNION
	SELECT t.typrelid FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
	 WHERE t.typrelid <> 0
), schemas AS (
	SELECT objid AS oid FROM members WHERE classid = 'pg_namespace'::regclass
	UNION
	SELECT extnamespace FROM ext
), facts(section, object, detail) AS (
	-- every member object
	SELECT 'member', pg_describe_object(m.classid, m.objid, 0), ''
	  FROM members m
	UNION ALL
	SELECT 'extension', ext.extname,
		   format('config %s', (SELECT string_agg(format('%s where %L', c::regclass, ext.extcondition[i]), ', ' ORDER BY c::regclass::text)
								  FROM unnest(ext.extconfig) WITH ORDINALITY AS u(c, i)))
	  FROM ext
	UNION ALL
	SELECT 'schema', n.nspname::text,
		   format('acl %s comment %s', n.nspacl::text, obj_description(n.oid, 'pg_namespace'))
	  FROM schemas s JOIN pg_namespace n ON n.oid = s.oid
	UNION ALL
	SELECT 'relation', c.oid::regclass::text,
		   format('kind %s persistence %s options %s rls %s/%s acl %s comment %s',
				  c.relkind, c.relpersistence, c.reloptions::text, c.relrowsecurity, c.relforcerowsecurity,
				  c.relacl::text, obj_description(c.oid, 'pg_class'))
	  FROM rels r JOIN pg_class c ON c.oid = r.oid
	UNION ALL
	SELECT 'columns', c.oid::regclass::text,
		   (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
			  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
	  FROM rels r JOIN pg_class c ON c.oid = r.oid
	 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
	UNION ALL
	SELECT 'column', format('%s.%I', c.oid::regclass, a.attname),
		   format('type %s notnull %s default %s identity %s generated %s collation %s acl %s comment %s',
				  format_type(a.atttypid, a.atttypmod), a.attnotnull,
				  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity, a.attgenerated,
				  CASE WHEN a.attcollation <> 0 THEN a.attcollation::regcollation::text END,
				  a.attacl::text, col_description(c.oid, a.attnum))
	  FROM rels r JOIN pg_class c ON c.oid = r.oid
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
	UNION ALL
	SELECT 'constraint', format('%s %I', coalesce(con.conrelid::regclass::text, con.contypid::regtype::text), con.conname),
		   format('%s deferrable %s/%s comment %s', pg_get_constraintdef(con.oid), con.condeferrable, con.condeferred,
				  obj_description(con.oid, 'pg_constraint'))
	  FROM pg_constraint con
	 WHERE con.conrelid IN (SELECT oid FROM rels)
		OR con.contypid IN (SELECT objid FROM members WHERE classid = 'pg_type'::regclass)
	UNION ALL
	SELECT 'index', i.indexrelid::regclass::text,
		   format('%s options %s comment %s', pg_get_indexdef(i.indexrelid), ic.reloptions::text,
				  obj_description(i.indexrelid, 'pg_class'))
	  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
	 WHERE i.indrelid IN (SELECT oid FROM rels)
	UNION ALL
	SELECT 'trigger', format('%s %I', t.tgrelid::regclass, t.tgname),
		   format('%s enabled %s', pg_get_triggerdef(t.oid), t.tgenabled)
	  FROM pg_trigger t
	 WHERE t.tgrelid IN (SELECT oid FROM rels) AND NOT t.tgisinternal
	UNION ALL
	SELECT 'policy', format('%s %I', p.polrelid::regclass, p.polname),
		   format('cmd %s permissive %s roles %s using %s check %s', p.polcmd, p.polpermissive,
				  (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',' ORDER BY 1) FROM unnest(p.polroles) r),
				  pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid))
	  FROM pg_policy p
	 WHERE p.polrelid IN (SELECT oid FROM rels)
	UNION ALL
	SELECT 'rule', format('%s %I', rw.ev_class::regclass, rw.rulename), pg_get_ruledef(rw.oid)
	  FROM pg_rewrite rw
	 WHERE rw.ev_class IN (SELECT oid FROM rels) AND rw.rulename <> '_RETURN'
	UNION ALL
	SELECT 'view', c.oid::regclass::text, pg_get_viewdef(c.oid)
	  FROM rels r JOIN pg_class c ON c.oid = r.oid
	 WHERE c.relkind IN ('v', 'm')
	UNION ALL
	SELECT 'sequence', s.seqrelid::regclass::text,
		   format('type %s start %s increment %s min %s max %s cache %s cycle %s owned by %s',
				  s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
				  (SELECT format('%s.%I', d.refobjid::regclass, a.attname)
					 FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
					WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
					  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
	  FROM pg_sequence s
	 WHERE s.seqrelid IN (SELECT oid FROM rels)
	UNION ALL
	SELECT 'function', p.oid::regprocedure::text,
		   format(E'%s\nacl %s comment %s', pg_get_functiondef(p.oid), p.proacl::text, obj_description(p.oid, 'pg_proc'))
	  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
	 WHERE p.prokind IN ('f', 'p', 'w')
	UNION ALL
	SELECT 'aggregate', p.oid::regprocedure::text, format('acl %s comment %s', p.proacl::text, obj_description(p.oid, 'pg_proc'))
	  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
	 WHERE p.prokind = 'a'
	UNION ALL
	SELECT 'type', t.oid::regtype::text,
		   format('typtype %s base %s notnull %s default %s acl %s comment %s', t.typtype,
				  CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) END,
				  t.typnotnull, t.typdefault, t.typacl::text, obj_description(t.oid, 'pg_type'))
	  FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
	UNION ALL
	SELECT 'enum', e.enumtypid::regtype::text,
		   string_agg(e.enumlabel::text, ', ' ORDER BY e.enumsortorder)
	  FROM pg_enum e
	 WHERE e.enumtypid IN (SELECT objid FROM members WHERE classid = 'pg_type'::regclass)
	 GROUP BY e.enumtypid
)
SELECT section, object, coalesce(detail, '') AS detail FROM facts ORDER BY section, object, detail;
