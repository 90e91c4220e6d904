/*-------------------------------------------------------------------------
 *
 * planner.c
 *	  Keeps the plans of the queue's tables independent of how empty the
 *	  tables were when the plans were made.
 *
 * A plan made while dialer.scheduled_calls is empty (a fresh installation,
 * or just after VACUUM) believes the table has a page or two, and a sequential
 * scan is then the cheapest way to find one row by its key.  Such plans live
 * as long as the session: the foreign-key check of every event row (planned
 * once per session by ri_triggers.c), the lookups of PL/pgSQL functions and
 * the dispatcher's own statements.  A big enqueue then scans every row it has
 * written for every row it writes: quadratic.
 *
 * The planner therefore never sees a table of schema dialer as smaller than
 * DIALER_MIN_PAGES pages (the same device PostgreSQL itself applies to a
 * table that was never vacuumed, with a larger floor): a key lookup is always
 * planned through its index, whatever the statistics said at planning time.
 * Bigger tables are left exactly as the statistics describe them.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/planner.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "nodes/pathnodes.h"
#include "optimizer/plancat.h"
#include "utils/lsyscache.h"

#include "planner.h"

/* below this many pages, a table of schema dialer is planned as this big */
#define DIALER_MIN_PAGES	100
/* rows per page assumed when the table has no statistics to say */
#define DIALER_ROWS_PER_PAGE	50

static get_relation_info_hook_type prev_get_relation_info = NULL;

/*
 * True when relid is a relation of the schema named "dialer" (the extension's
 * schema; its name is fixed by the control file).
 */
static bool
is_dialer_relation(Oid relid)
{
	Oid			nsp = get_rel_namespace(relid);
	char	   *name;
	bool		result;

	if (!OidIsValid(nsp))
		return false;
	name = get_namespace_name(nsp);
	result = (name != NULL && strcmp(name, "dialer") == 0);
	if (name)
		pfree(name);
	return result;
}

/*
 * get_relation_info hook: raises the size estimate of a small dialer table
 * (and of its non-partial indexes) to DIALER_MIN_PAGES pages, keeping the
 * table's row density when it has one.
 */
static void
dialer_get_relation_info(PlannerInfo *root, Oid relid, bool inhparent,
						 RelOptInfo *rel)
{
	double		density;
	ListCell   *lc;

	if (prev_get_relation_info)
		prev_get_relation_info(root, relid, inhparent, rel);

	if (rel->pages >= DIALER_MIN_PAGES || !is_dialer_relation(relid))
		return;

	density = (rel->pages > 0 && rel->tuples > 0) ?
		Max(rel->tuples / rel->pages, 1.0) : DIALER_ROWS_PER_PAGE;
	rel->pages = DIALER_MIN_PAGES;
	rel->tuples = Max(rel->tuples, rint(density * DIALER_MIN_PAGES));

	foreach(lc, rel->indexlist)
	{
		IndexOptInfo *index = (IndexOptInfo *) lfirst(lc);

		if (index->indpred == NIL)
			index->tuples = rel->tuples;
	}
}

/*
 * Installs the hook (from _PG_init, in every process that loads the library).
 */
void
dialer_planner_init(void)
{
	prev_get_relation_info = get_relation_info_hook;
	get_relation_info_hook = dialer_get_relation_info;
}
