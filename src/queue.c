/*-------------------------------------------------------------------------
 *
 * queue.c
 *	  Claiming and storing: the dispatcher's only contact with the tables.
 *	  Each function runs one short transaction of its own through SPI, with
 *	  parameters; no transaction is ever open while a request is in flight.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "provider.h"
#include "queue.h"
#include "settings.h"

/*
 * Opens a transaction with a snapshot and an SPI connection; returns the
 * caller's memory context, which queue_end() restores.
 */
static MemoryContext
queue_begin(const char *activity)
{
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "pg_dialer: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
	return caller;
}

static void
queue_end(MemoryContext caller)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(caller);
}

/*
 * The hot statements are prepared once and kept for the life of the
 * dispatcher; a kept plan is re-analysed by the plan cache when what it uses
 * changes (DROP and CREATE EXTENSION included).
 */
static SPIPlanPtr capacity_plan = NULL;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr store_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;

static SPIPlanPtr
kept_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *types)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

		if (plan == NULL)
			elog(ERROR, "pg_dialer: could not prepare \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "pg_dialer: could not keep the plan of \"%s\"", sql);
		*slot = plan;
	}
	return *slot;
}

/* Text of column col of the current SPI row, copied into cxt, or NULL. */
static char *
spi_text(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (isnull)
		return NULL;
	return MemoryContextStrdup(cxt, TextDatumGetCString(d));
}

/*
 * The version of the extension's schema installed in this database
 * (pg_extension.extversion), copied into the caller's memory context, or NULL
 * when the extension is not created.  Between the install of a new library
 * and ALTER EXTENSION pg_dialer UPDATE it differs from PG_DIALER_VERSION.
 */
char *
queue_extension_version(void)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *version = NULL;
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;

	StartTransactionCommand();
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("pg_dialer"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = MemoryContextStrdup(caller, TextDatumGetCString(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	return version;
}

/*
 * Runs one argument-less SQL function of the queue that returns an int (how
 * many calls it changed), in its own transaction; activity names the step.
 */
static int
queue_run_counting(const char *activity, const char *query)
{
	MemoryContext caller = queue_begin(activity);
	int			n = 0;
	bool		isnull;

	if (SPI_execute(query, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: \"%s\" failed", query);
	if (SPI_processed == 1)
		n = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	queue_end(caller);
	return n;
}

/*
 * Turns calls left in 'dispatching' by a previous dispatcher into 'unknown'.
 */
int
queue_recover(void)
{
	return queue_run_counting("pg_dialer: recovering calls left dispatching",
							  "SELECT dialer.recover_dispatching()");
}

/*
 * Looks again at the calls parked for a calling window, with the calling-window
 * settings just reloaded (dialer.reevaluate_parked_calls): a window widened makes
 * them due now, a window moved moves their wake-up.  Returns how many moved.
 */
int
queue_reevaluate_parked(void)
{
	return queue_run_counting("pg_dialer: re-evaluating calls waiting for a calling window",
							  "SELECT dialer.reevaluate_parked_calls()");
}

static DialerProvider *
find_provider(List *known, const char *name)
{
	ListCell   *lc;

	foreach(lc, known)
	{
		DialerProvider *p = lfirst(lc);

		if (strcmp(p->name, name) == 0)
			return p;
	}
	return NULL;
}

static void
set_string(char **field, char *value)
{
	if (*field)
		pfree(*field);
	*field = value;
}

/*
 * Loads the enabled providers into the list of known ones.  Provider structs
 * live in TopMemoryContext and are never freed (in-flight requests point at
 * them); their strings are replaced, and a provider no longer enabled is marked
 * unseen.  Requests copy whatever they need from a provider when they are
 * prepared, so replacing the strings here is safe.
 */
List *
queue_load_providers(List *known)
{
	MemoryContext caller = queue_begin("pg_dialer: loading providers");
	MemoryContext top = TopMemoryContext;
	ListCell   *lc;
	uint64		i;

	if (SPI_execute("SELECT name, kind, rtrim(base_url, '/'), account_sid, auth_token, api_key_sid, "
					"api_key_secret, bearer_token, from_number, twiml_url, status_callback_url, "
					"array_to_string(allowed_hosts, ','), coalesce(ring_timeout, 0), machine_detection, "
					"calls_per_second::float8, coalesce(max_concurrency, 0), status_callback_call_id, "
					"async_amd FROM dialer.worker_providers()", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: loading providers failed");

	foreach(lc, known)
		((DialerProvider *) lfirst(lc))->seen = false;

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		char	   *kind = SPI_getvalue(tup, desc, 2);
		char	   *hosts;
		bool		isnull;
		const ProviderOps *ops = provider_ops_for_kind(kind, name);
		DialerProvider *p = find_provider(known, name);
		MemoryContext old;

		if (p == NULL)
		{
			p = MemoryContextAllocZero(top, sizeof(DialerProvider));
			strlcpy(p->name, name, DIALER_NAME_LEN);
			p->tokens = 1;
			p->tokens_at = GetCurrentTimestamp();
			old = MemoryContextSwitchTo(top);
			known = lappend(known, p);
			MemoryContextSwitchTo(old);
		}
		p->seen = true;
		p->ops = ops;
		set_string(&p->base_url, spi_text(tup, desc, 3, top));
		set_string(&p->account_sid, spi_text(tup, desc, 4, top));
		set_string(&p->auth_token, spi_text(tup, desc, 5, top));
		set_string(&p->api_key_sid, spi_text(tup, desc, 6, top));
		set_string(&p->api_key_secret, spi_text(tup, desc, 7, top));
		set_string(&p->bearer_token, spi_text(tup, desc, 8, top));
		set_string(&p->from_number, spi_text(tup, desc, 9, top));
		set_string(&p->twiml_url, spi_text(tup, desc, 10, top));
		set_string(&p->status_callback_url, spi_text(tup, desc, 11, top));
		list_free_deep(p->allowed_hosts);
		p->allowed_hosts = NIL;
		hosts = SPI_getvalue(tup, desc, 12);
		if (hosts && hosts[0])
		{
			char	   *tok,
					   *save = NULL;

			old = MemoryContextSwitchTo(top);
			for (tok = strtok_r(hosts, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
				p->allowed_hosts = lappend(p->allowed_hosts, pstrdup(tok));
			MemoryContextSwitchTo(old);
		}
		p->ring_timeout = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
		set_string(&p->machine_detection, spi_text(tup, desc, 14, top));
		p->calls_per_second = DatumGetFloat8(SPI_getbinval(tup, desc, 15, &isnull));
		p->max_concurrency = DatumGetInt32(SPI_getbinval(tup, desc, 16, &isnull));
		p->status_callback_call_id = DatumGetBool(SPI_getbinval(tup, desc, 17, &isnull));
		p->async_amd = DatumGetBool(SPI_getbinval(tup, desc, 18, &isnull));
	}
	queue_end(caller);
	return known;
}

/*
 * For a provider at its max_concurrency: how many of its calls are due and
 * waiting (up to 10,000), and when reconciliation frees its first slot (its
 * oldest call in progress stops counting after dialer.reconcile_after without
 * news; 0 when none).  Only asked while the provider is at its limit.
 */
void
queue_provider_stall(DialerProvider *provider, int *due_calls, TimestampTz *frees_at)
{
	MemoryContext caller = queue_begin("pg_dialer: provider at max_concurrency");
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(provider->name);
	if (SPI_execute_with_args("SELECT due_calls, frees_at FROM dialer.provider_stall($1)",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_dialer: provider_stall failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*due_calls = isnull ? 0 : DatumGetInt32(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*frees_at = isnull ? 0 : DatumGetTimestampTz(d);
	queue_end(caller);
}

/*
 * Claims up to max_calls due calls of a provider (fewer when the provider is
 * near its max_concurrency; *capacity says how many it could take).  Returns a
 * list of ClaimedCall in the caller's memory context.  The claim is committed
 * (synchronously) before this returns: only then may the requests be sent.
 */
List *
queue_claim(DialerProvider *provider, int max_calls, int *capacity)
{
	MemoryContext caller = queue_begin("pg_dialer: claiming due calls");
	List	   *calls = NIL;
	Oid			cap_types[1] = {TEXTOID};
	Datum		cap_values[1];
	Oid			types[6] = {TEXTOID, INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[6];
	bool		isnull;
	uint64		i;
	int			n;

	/* calls in progress count against max_concurrency until they end */
	if (provider->max_concurrency > 0)
	{
		cap_values[0] = CStringGetTextDatum(provider->name);
		if (SPI_execute_plan(kept_plan(&capacity_plan, "SELECT dialer.provider_capacity($1)", 1, cap_types),
							 cap_values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "pg_dialer: provider_capacity failed");
		*capacity = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	else
		*capacity = PG_INT32_MAX;
	n = Min(max_calls, *capacity);

	if (n > 0)
	{
		values[0] = CStringGetTextDatum(provider->name);
		values[1] = Int32GetDatum(n);
		values[2] = CStringGetTextDatum(dialer_default_timezone);
		values[3] = CStringGetTextDatum(dialer_call_window_start);
		values[4] = CStringGetTextDatum(dialer_call_window_end);
		values[5] = CStringGetTextDatum(dialer_allowed_numbers ? dialer_allowed_numbers : "");
		if (SPI_execute_plan(kept_plan(&claim_plan,
									   "SELECT id, attempt, to_number, from_number, mode, payload, message, "
									   "url, script, base_url, idempotency_key, campaign "
									   "FROM dialer.claim_calls($1, $2, $3, $4::time, $5::time, $6)",
									   6, types),
							 values, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "pg_dialer: claim_calls failed");

		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			ClaimedCall *c = MemoryContextAllocZero(caller, sizeof(ClaimedCall));
			MemoryContext old;

			c->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			c->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
			c->to_number = spi_text(tup, desc, 3, caller);
			c->from_number = spi_text(tup, desc, 4, caller);
			c->mode = spi_text(tup, desc, 5, caller);
			c->payload = spi_text(tup, desc, 6, caller);
			c->message = spi_text(tup, desc, 7, caller);
			c->url = spi_text(tup, desc, 8, caller);
			c->script = spi_text(tup, desc, 9, caller);
			c->base_url = spi_text(tup, desc, 10, caller);
			c->idempotency_key = spi_text(tup, desc, 11, caller);
			c->campaign = spi_text(tup, desc, 12, caller);
			old = MemoryContextSwitchTo(caller);
			calls = lappend(calls, c);
			MemoryContextSwitchTo(old);
		}
	}
	queue_end(caller);
	return calls;
}

/* Builds a one-dimensional array of n Datums of a type, NULLs allowed. */
static Datum
make_array(Datum *elems, bool *nulls, int n, Oid type)
{
	int			dims[1];
	int			lbs[1];
	int16		typlen;
	bool		typbyval;
	char		typalign;

	dims[0] = n;
	lbs[0] = 1;
	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, type,
											  typlen, typbyval, typalign));
}

/*
 * Gives claimed calls whose requests never left back to the queue
 * (dialer.release_claims): the dispatcher stops while their claim waits for
 * standbys.
 */
void
queue_release(List *calls)
{
	MemoryContext caller = queue_begin("pg_dialer: releasing unsent claims");
	int			n = list_length(calls);
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *attempts = palloc(sizeof(Datum) * n);
	Oid			types[2] = {INT8ARRAYOID, INT4ARRAYOID};
	Datum		values[2];
	ListCell   *lc;
	int			i = 0;

	foreach(lc, calls)
	{
		ClaimedCall *c = lfirst(lc);

		ids[i] = Int64GetDatum(c->id);
		attempts[i] = Int32GetDatum(c->attempt);
		i++;
	}
	values[0] = make_array(ids, NULL, n, INT8OID);
	values[1] = make_array(attempts, NULL, n, INT4OID);
	if (SPI_execute_with_args("SELECT dialer.release_claims($1, $2)", 2, types, values, NULL,
							  false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: release_claims failed");
	queue_end(caller);
}

/* A text Datum for s, or a NULL flag. */
static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * Stores n outcomes in one transaction with dialer.record_results().
 */
void
queue_store(DialerOutcome *outcomes, int n)
{
	MemoryContext caller;
	Datum	   *cols[10];
	bool	   *nulls[10];
	Oid			elem_types[10] = {INT8OID, INT4OID, TEXTOID, INT4OID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, INT4OID, TIMESTAMPTZOID};
	Oid			arg_types[10] = {INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID};
	Datum		args[10];
	int			c,
				i;

	if (n == 0)
		return;
	caller = queue_begin("pg_dialer: storing outcomes");
	for (c = 0; c < 10; c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc0(sizeof(bool) * n);
	}
	for (i = 0; i < n; i++)
	{
		DialerOutcome *o = &outcomes[i];

		cols[0][i] = Int64GetDatum(o->call_id);
		cols[1][i] = Int32GetDatum(o->attempt);
		cols[2][i] = CStringGetTextDatum(o->outcome);
		cols[3][i] = Int32GetDatum(o->http_status);
		nulls[3][i] = (o->http_status == 0);
		cols[4][i] = text_or_null(o->provider_call_id, &nulls[4][i]);
		cols[5][i] = text_or_null(o->error_code, &nulls[5][i]);
		cols[6][i] = text_or_null(o->error_message, &nulls[6][i]);
		cols[7][i] = text_or_null(o->more_info, &nulls[7][i]);
		cols[8][i] = Int32GetDatum(o->delay_ms);
		cols[9][i] = TimestampTzGetDatum(o->responded_at);
		nulls[9][i] = (o->responded_at == 0);
	}
	for (c = 0; c < 10; c++)
		args[c] = make_array(cols[c], nulls[c], n, elem_types[c]);

	if (SPI_execute_plan(kept_plan(&store_plan,
								   "SELECT dialer.record_results($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
								   10, arg_types),
						 args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: record_results failed");
	queue_end(caller);
}

/*
 * The earliest time a scheduled call of an enabled provider not in
 * blocked_names is due, or 0 when there is none; *reconcile_at is when the next
 * call falls due for reconciliation (0: none).
 */
TimestampTz
queue_next_due(List *blocked_names, TimestampTz *reconcile_at)
{
	MemoryContext caller = queue_begin("pg_dialer: looking for the next due call");
	Oid			types[1] = {TEXTARRAYOID};
	Datum		args[1];
	Datum	   *elems;
	ListCell   *lc;
	int			i = 0;
	bool		isnull;
	TimestampTz result = 0;

	elems = palloc(sizeof(Datum) * Max(list_length(blocked_names), 1));
	foreach(lc, blocked_names)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	args[0] = make_array(elems, NULL, i, TEXTOID);

	if (SPI_execute_plan(kept_plan(&next_due_plan,
								   "SELECT dispatch_at, reconcile_at FROM dialer.next_due_at($1)", 1, types),
						 args, NULL, true, 1) != SPI_OK_SELECT
		|| SPI_processed != 1)
		elog(ERROR, "pg_dialer: next_due_at failed");
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = DatumGetTimestampTz(d);
		*reconcile_at = 0;
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
			*reconcile_at = DatumGetTimestampTz(d);
	}
	queue_end(caller);
	return result;
}

/*
 * Claims up to max_calls calls to look up at their providers (committed before
 * any lookup leaves).  Returns a list of ClaimedCall with id and
 * provider_call_id and provider set.
 */
List *
queue_claim_reconciliations(int max_calls)
{
	MemoryContext caller = queue_begin("pg_dialer: claiming calls to reconcile");
	Oid			types[1] = {INT4OID};
	Datum		args[1];
	List	   *calls = NIL;
	bool		isnull;
	uint64		i;

	args[0] = Int32GetDatum(max_calls);
	if (SPI_execute_with_args("SELECT id, provider, provider_call_id FROM dialer.claim_reconciliations($1)",
							  1, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: claim_reconciliations failed");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ClaimedCall *c = MemoryContextAllocZero(caller, sizeof(ClaimedCall));
		MemoryContext old;

		c->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		c->provider = spi_text(tup, desc, 2, caller);
		c->provider_call_id = spi_text(tup, desc, 3, caller);
		old = MemoryContextSwitchTo(caller);
		calls = lappend(calls, c);
		MemoryContextSwitchTo(old);
	}
	queue_end(caller);
	return calls;
}

/*
 * Claims up to max_calls unknown calls of provider that have no provider call
 * id, to search for at the provider by what was sent (committed, and counted
 * against each call's 3 searches, before any search leaves).  Returns a list of
 * ClaimedCall with id, provider and search (what to search for, JSON) set.
 */
List *
queue_claim_searches(DialerProvider *provider, int max_calls)
{
	MemoryContext caller = queue_begin("pg_dialer: claiming calls to search for");
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		args[2];
	List	   *calls = NIL;
	bool		isnull;
	uint64		i;

	args[0] = CStringGetTextDatum(provider->name);
	args[1] = Int32GetDatum(max_calls);
	if (SPI_execute_with_args("SELECT id, search FROM dialer.claim_searches($1, $2)",
							  2, types, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_dialer: claim_searches failed");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ClaimedCall *c = MemoryContextAllocZero(caller, sizeof(ClaimedCall));
		MemoryContext old;

		c->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		c->search = spi_text(tup, desc, 2, caller);
		c->provider = MemoryContextStrdup(caller, provider->name);
		old = MemoryContextSwitchTo(caller);
		calls = lappend(calls, c);
		MemoryContextSwitchTo(old);
	}
	queue_end(caller);
	return calls;
}

/*
 * Logs how many of the calls just looked up at their provider reached a final
 * status (an operator learns that callbacks were lost and were made up for).
 */
static void
log_settled(List *results)
{
	Datum	   *ids = palloc(sizeof(Datum) * list_length(results));
	Oid			types[1] = {INT8ARRAYOID};
	Datum		args[1];
	ListCell   *lc;
	int			n = 0;
	int64		settled;
	bool		isnull;

	foreach(lc, results)
		ids[n++] = Int64GetDatum(((LookupResult *) lfirst(lc))->call_id);
	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (SPI_execute_with_args("SELECT count(*) FROM dialer.scheduled_calls "
							  "WHERE id = ANY($1) AND finished_at IS NOT NULL",
							  1, types, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pg_dialer: counting reconciled calls failed");
	settled = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (settled > 0)
		ereport(LOG,
				(errmsg("pg_dialer: reconciliation settled " INT64_FORMAT " of %d call(s) looked up at their provider",
						settled, n),
				 errdetail("Their final status came from the provider's call records, not from a callback.")));
}

/*
 * After dialer.apply_reconciliation(): when it gave a call up (its lookups
 * failed too many times in a row, so it is now unknown), the reason it
 * returned goes to the server log.
 */
static void
log_given_up(int64 call_id)
{
	bool		isnull;
	Datum		reason = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

	if (!isnull)
		ereport(LOG,
				(errmsg("pg_dialer: call " INT64_FORMAT " is unknown: %s", call_id, TextDatumGetCString(reason)),
				 errhint("It is never re-sent automatically; check it at the provider, then use dialer.retry_call() or leave it.")));
}

/*
 * Applies what lookups and searches found (each its kind's report), in one
 * transaction.
 */
void
queue_store_lookups(List *results)
{
	MemoryContext caller;
	Oid			types[4] = {INT8OID, TEXTOID, INT4OID, TEXTOID};
	Datum		args[4];
	char		nulls[4] = "    ";
	ListCell   *lc;

	if (results == NIL)
		return;
	caller = queue_begin("pg_dialer: storing reconciliations");
	foreach(lc, results)
	{
		LookupResult *r = lfirst(lc);

		args[0] = Int64GetDatum(r->call_id);
		args[2] = Int32GetDatum(r->http_status);
		nulls[2] = r->http_status ? ' ' : 'n';
		args[3] = CStringGetTextDatum(r->report);
		if (r->search)
		{
			/* a search by what was sent */
			args[1] = CStringGetTextDatum(r->search);
			if (SPI_execute_with_args("SELECT dialer.apply_search($1, $2::jsonb, $3, $4::jsonb)",
									  4, types, args, nulls, false, 1) != SPI_OK_SELECT)
				elog(ERROR, "pg_dialer: apply_search failed");
			continue;
		}
		args[1] = CStringGetTextDatum(r->provider_call_id);
		if (SPI_execute_with_args("SELECT dialer.apply_reconciliation($1, $2, $3, $4::jsonb)",
								  4, types, args, nulls, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "pg_dialer: apply_reconciliation failed");
		log_given_up(r->call_id);
	}
	log_settled(results);
	queue_end(caller);
}
