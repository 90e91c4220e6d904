/*-------------------------------------------------------------------------
 *
 * queue.h
 *	  Claiming and storing (queue.c): the dispatcher's only contact with the
 *	  tables, each function one short transaction through SPI.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/queue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_QUEUE_H
#define DIALER_QUEUE_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"

#include "call_outcome.h"
#include "provider.h"

/* What a reconciliation lookup or search found. */
typedef struct LookupResult
{
	int64		call_id;
	char	   *provider_call_id;
	char	   *search;			/* a search by what was sent: what was
								 * searched (JSON) */
	int			http_status;	/* 0: no answer */
	char	   *report;			/* pg_dialer's report of the answer (JSON,
								 * lookup_report.c) */
} LookupResult;

extern char *queue_extension_version(void);
extern int	queue_recover(void);
extern int	queue_reevaluate_parked(void);
extern List *queue_load_providers(List *known);
extern void queue_provider_stall(DialerProvider *provider, int *due_calls, TimestampTz *frees_at);
extern List *queue_claim(DialerProvider *provider, int max_calls, int *capacity);
extern void queue_release(List *calls);
extern void queue_store(DialerOutcome *outcomes, int n);
extern TimestampTz queue_next_due(List *blocked_names, TimestampTz *reconcile_at);
extern List *queue_claim_reconciliations(int max_calls);
extern List *queue_claim_searches(DialerProvider *provider, int max_calls);
extern void queue_store_lookups(List *results);

#endif							/* DIALER_QUEUE_H */
