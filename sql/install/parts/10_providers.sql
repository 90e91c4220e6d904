/*
 * pg_dialer: providers, as the dispatcher sees them.
 *
 * dialer.worker_providers()        the providers a dispatcher serves, with their settings
 * dialer.provider_capacity()       how many calls a provider may take now (max_concurrency)
 * dialer.provider_stall()          since when a provider has been at its max_concurrency
 * providers_changed                reloads the dispatcher's copy of dialer.providers at commit
 *
 * Copyright (c) 2026, pg_dialer developers
 */

/*
 * How many more calls a provider may have in progress: its max_concurrency less
 * the calls dispatching or dialing that had news within dialer.reconcile_after.
 * NULL max_concurrency means no limit.  0 for a disabled or unknown provider.
 */
CREATE FUNCTION dialer.provider_capacity(provider text)
RETURNS int
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
DECLARE
	v_max	int;
	v_on	boolean;
	v_busy	int;
BEGIN
	SELECT p.max_concurrency, p.enabled INTO v_max, v_on FROM dialer.providers p WHERE p.name = provider;
	IF NOT FOUND OR NOT v_on THEN
		RETURN 0;
	END IF;
	IF v_max IS NULL THEN
		RETURN 2147483647;
	END IF;
	SELECT count(*) INTO v_busy
	  FROM (SELECT 1 FROM dialer.scheduled_calls c
			 WHERE c.provider = provider_capacity.provider
			   AND c.status = ANY (dialer.in_progress_statuses())
			   AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval
			 ORDER BY c.updated_at DESC
			 LIMIT v_max) s;
	RETURN greatest(v_max - v_busy, 0);
END;
$$;
COMMENT ON FUNCTION dialer.provider_capacity(text) IS
	'Internal: Calls a provider may still start: max_concurrency less its calls dispatching or dialing (with news within dialer.reconcile_after)';

/*
 * For a provider at its max_concurrency (the dispatcher asks, to say why it waits):
 * how many of its calls are due and waiting (counted up to 10,000), and when its first
 * slot frees by itself: its oldest call in progress stops counting against
 * max_concurrency after dialer.reconcile_after without news, and is looked up then.
 */
CREATE FUNCTION dialer.provider_stall(provider text, OUT due_calls int, OUT frees_at timestamptz)
RETURNS record
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT (SELECT count(*)::int
			  FROM (SELECT 1 FROM dialer.scheduled_calls c
					 WHERE c.provider = provider_stall.provider AND c.status = 'scheduled'
					   AND c.next_attempt_at <= now()
					 LIMIT 10000) d),
		   (SELECT min(c.updated_at) + current_setting('dialer.reconcile_after')::interval
			  FROM dialer.scheduled_calls c
			 WHERE c.provider = provider_stall.provider AND c.status = ANY (dialer.in_progress_statuses())
			   AND c.updated_at > now() - current_setting('dialer.reconcile_after')::interval);
$$;
COMMENT ON FUNCTION dialer.provider_stall(text) IS
	'Worker: for a provider at its max_concurrency, its due calls waiting (up to 10,000) and when reconciliation frees its first slot';

/*
 * A provider added, enabled or changed may make waiting calls dispatchable: when
 * the change commits, the worker reloads the providers and looks at the queue.
 */
CREATE FUNCTION dialer.reload_providers_at_commit()
RETURNS void
LANGUAGE C VOLATILE STRICT
AS 'MODULE_PATHNAME', 'dialer_providers_changed';
COMMENT ON FUNCTION dialer.reload_providers_at_commit() IS
	'Internal: Makes the worker reload dialer.providers (and wake) when the current transaction commits';

CREATE FUNCTION dialer.providers_changed()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, dialer, pg_temp
AS $$
BEGIN
	PERFORM dialer.reload_providers_at_commit();
	RETURN NULL;
END;
$$;
COMMENT ON FUNCTION dialer.providers_changed() IS
	'Trigger: the worker reloads the providers when a change to dialer.providers commits';
CREATE TRIGGER providers_changed AFTER INSERT OR UPDATE OR DELETE ON dialer.providers
	FOR EACH STATEMENT EXECUTE FUNCTION dialer.providers_changed();

/*
 * The provider configurations the worker dispatches with (secrets included: only
 * the owner and the worker may run this).
 */
CREATE FUNCTION dialer.worker_providers()
RETURNS SETOF dialer.providers
LANGUAGE sql
STABLE
SET search_path = pg_catalog, dialer, pg_temp
AS $$
	SELECT * FROM dialer.providers p WHERE p.enabled ORDER BY p.name;
$$;
COMMENT ON FUNCTION dialer.worker_providers() IS
	'Worker: enabled provider configurations, secrets included (owner only)';
