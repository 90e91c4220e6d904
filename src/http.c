/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The HTTP engine: one libcurl multi handle drives every provider request
 *	  of the dispatcher at once, with bounded concurrency, timeouts, a cap on
 *	  response size, connection reuse and TLS verification always on.
 *
 *	  Sockets are reported to PostgreSQL's fd.c as external descriptors, so the
 *	  backend's own file cache makes room for them and the process stays within
 *	  its descriptor limit.
 *
 *	  libcurl is driven by events (its socket API): it says which sockets to
 *	  watch and when its next timeout is due, the sockets sit in an epoll set
 *	  of their own, and the dispatcher waits on that set and its latch
 *	  together.  So a latch wake-up (a new call, a callback, a signal) ends a
 *	  wait at once even while requests are in flight, and a wait costs nothing
 *	  per request that has nothing to say.
 *
 *	  A POST leaves at most once.  libcurl silently sends a request again when
 *	  a reused keep-alive connection dies before any answer byte; for a call
 *	  that could place it twice.  Each easy handle counts, in libcurl's
 *	  pre-request callback, how often it is about to send, and stops a second
 *	  send: the request fails as one whose answer was lost, and the provider
 *	  code decides what that means (unknown, or a recorded retry with the same
 *	  Idempotency-Key).
 *
 *	  This is the only file that calls libcurl: the rest of pg_dialer sees
 *	  an HttpRequest (http.h) and the functions below.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "http.h"
#include "settings.h"

/* CURLOPT_PREREQFUNCTION, which keeps a POST from being re-sent, came in 7.80.0 */
#if LIBCURL_VERSION_NUM < 0x075000
#error "pg_dialer needs libcurl 7.80.0 or later (CURLOPT_PREREQFUNCTION)"
#endif

StaticAssertDecl(CURL_ERROR_SIZE <= HTTP_ERROR_SIZE,
				 "HTTP_ERROR_SIZE must hold libcurl's error buffer");

/* what a request holds of libcurl */
struct HttpTransfer
{
	CURL	   *easy;
	struct curl_slist *headers;
};

static CURLM *multi = NULL;
static dlist_head in_flight = DLIST_STATIC_INIT(in_flight);
static int	n_in_flight = 0;
static int	n_sockets = 0;

/* the sockets libcurl asks to watch, and the wait on them and the latch */
static int	watched_fds = -1;	/* an epoll set */
static WaitEventSet *waits = NULL;
static TimestampTz curl_timer_at = 0;	/* libcurl's next timeout; 0: none */
static int	n_running = 0;		/* transfers libcurl still runs */

/*
 * libcurl's socket callback: which of its sockets to watch, for what.  The
 * socket joins, changes in or leaves the epoll set.  A socket libcurl has
 * closed has left the set by itself, so a failed removal is no error.
 */
static int
watch_socket(CURL *easy pg_attribute_unused(), curl_socket_t s, int what,
			 void *clientp pg_attribute_unused(), void *socketp pg_attribute_unused())
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		(void) epoll_ctl(watched_fds, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	if (epoll_ctl(watched_fds, EPOLL_CTL_MOD, s, &ev) == 0)
		return 0;
	if (errno == ENOENT && epoll_ctl(watched_fds, EPOLL_CTL_ADD, s, &ev) == 0)
		return 0;
	elog(LOG, "pg_dialer: could not watch a socket: %m");
	return -1;					/* libcurl fails the transfers */
}

/*
 * libcurl's timer callback: when it must next be told that time passed
 * (timeout_ms from now; -1: no timeout is pending).
 */
static int
set_timer(CURLM *m pg_attribute_unused(), long timeout_ms, void *clientp pg_attribute_unused())
{
	curl_timer_at = timeout_ms < 0 ? 0 :
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * Lets libcurl act on whatever is ready, without waiting: the sockets the
 * epoll set says are ready, then its timeout when due (which is also how a
 * request just added starts).
 */
static void
progress(void)
{
	struct epoll_event ready[64];
	int			n;

	do
	{
		int			i;

		n = epoll_wait(watched_fds, ready, lengthof(ready), 0);
		for (i = 0; i < n; i++)
		{
			int			flags = 0;

			if (ready[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (ready[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (ready[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, ready[i].data.fd, flags, &n_running);
		}
	} while (n == lengthof(ready));

	if (curl_timer_at != 0 && GetCurrentTimestamp() >= curl_timer_at)
	{
		curl_timer_at = 0;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &n_running);
	}
}

/*
 * Starts libcurl and the multi handle.  Called once when the dispatcher
 * starts.
 */
void
http_init(void)
{
	curl_version_info_data *version = curl_version_info(CURLVERSION_NOW);

	if (version->version_num < 0x075000)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pg_dialer needs libcurl 7.80.0 or later, but the loaded libcurl is %s",
						version->version),
				 errdetail("Older versions cannot stop libcurl from sending a request twice on a dead keep-alive connection."),
				 errhint("Upgrade the libcurl package and restart the server.")));
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("pg_dialer could not initialize libcurl")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pg_dialer could not create a libcurl multi handle")));

	ReserveExternalFD();
	watched_fds = epoll_create1(EPOLL_CLOEXEC);
	if (watched_fds < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("pg_dialer could not create an epoll set: %m")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, watch_socket);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, set_timer);
	waits = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(waits, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(waits, WL_SOCKET_READABLE, watched_fds, NULL, NULL);
	AddWaitEventToSet(waits, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
}

/*
 * The number of requests the dispatcher may really run at once: the setting,
 * capped so that one socket per request plus fd.c's own files fit in the
 * descriptors PostgreSQL computed as safe for this process.  Says so once when
 * it caps.
 */
int
http_effective_concurrency(int wanted)
{
	static int	warned_for = -1;
	int			limit = Max(max_safe_fds - 64, 8);

	if (wanted <= limit)
		return wanted;
	if (warned_for != wanted)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("dialer.max_concurrency = %d exceeds what this process's file descriptor limit allows; using %d",
						wanted, limit),
				 errdetail("Each request needs a socket; PostgreSQL computed %d descriptors as safe for this process (max_files_per_process and the open-files limit).",
						   max_safe_fds),
				 errhint("Raise the server's open-files limit (ulimit -n, or LimitNOFILE in its systemd unit) and max_files_per_process, or lower dialer.max_concurrency.")));
		warned_for = wanted;
	}
	return limit;
}

/* curl callbacks: sockets are counted with fd.c */
static curl_socket_t
open_socket(void *clientp pg_attribute_unused(), curlsocktype purpose pg_attribute_unused(),
			struct curl_sockaddr *address)
{
	curl_socket_t s;

	ReserveExternalFD();
	s = socket(address->family, address->socktype, address->protocol);
	if (s == CURL_SOCKET_BAD)
		ReleaseExternalFD();
	else
		n_sockets++;
	return s;
}

static int
close_socket(void *clientp pg_attribute_unused(), curl_socket_t item)
{
	int			rc = close(item);

	ReleaseExternalFD();
	n_sockets--;
	return rc;
}

/* Response body, capped at req->max_response: a larger one aborts the transfer. */
static size_t
write_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	HttpRequest *req = (HttpRequest *) userdata;
	size_t		n = size * nmemb;

	if (req->response.len + n > req->max_response)
	{
		req->too_large = true;
		return 0;
	}
	appendBinaryStringInfo(&req->response, data, (int) n);
	return n;
}

/*
 * libcurl's pre-request callback, called each time the handle is about to
 * send its request on a connection (new or reused).  A second call means
 * libcurl wants to re-send after the connection died without an answer: the
 * request has left once already, so for a POST (send_once) the transfer is
 * stopped instead, and resend_refused tells outcome_from_http that the request
 * was sent and its answer lost.  GETs (lookups) change nothing at the provider
 * and may be re-sent.
 */
static int
before_send(void *clientp,
			char *conn_primary_ip pg_attribute_unused(),
			char *conn_local_ip pg_attribute_unused(),
			int conn_primary_port pg_attribute_unused(),
			int conn_local_port pg_attribute_unused())
{
	HttpRequest *req = (HttpRequest *) clientp;

	req->sends++;
	if (req->send_once && req->sends > 1)
	{
		req->resend_refused = true;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

/*
 * Headers: only whether the answer has a Retry-After is noted here; its value,
 * seconds or an HTTP date, is read by libcurl (note_transfer_end).
 */
static size_t
read_header(char *data, size_t size, size_t nmemb, void *userdata)
{
	HttpRequest *req = (HttpRequest *) userdata;
	size_t		n = size * nmemb;
	const char *name = "retry-after:";
	size_t		nl = strlen(name);

	if (n > nl && pg_strncasecmp(data, name, nl) == 0)
		req->retry_after_s = 0;
	return n;
}

/*
 * A new request of size bytes (at least sizeof(HttpRequest): callers may
 * extend it), zeroed, in its own memory context under TopMemoryContext (it
 * outlives the loop iteration that started it).
 */
HttpRequest *
http_new_request(Size size)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pg_dialer request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	HttpRequest *req;

	Assert(size >= sizeof(HttpRequest));
	req = palloc0(size);
	req->cxt = cxt;
	req->transfer = palloc0(sizeof(HttpTransfer));
	initStringInfo(&req->response);
	MemoryContextSwitchTo(old);
	return req;
}

/*
 * (Re)initialises req's easy handle for a POST to url, with the options every
 * provider request shares.  A previous phase's handle, headers and response are
 * dropped.
 */
void
http_prepare(HttpRequest *req, const char *url)
{
	HttpTransfer *t = req->transfer;
	CURL	   *easy;

	if (t->easy)
		curl_easy_cleanup(t->easy);
	if (t->headers)
		curl_slist_free_all(t->headers);
	t->headers = NULL;
	resetStringInfo(&req->response);
	req->too_large = false;
	req->retry_after_s = -1;
	req->errbuf[0] = '\0';
	req->max_response = (size_t) dialer_max_response_kb * 1024;
	req->send_once = true;
	req->sends = 0;
	req->resend_refused = false;

	easy = t->easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pg_dialer could not create a libcurl handle")));
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, read_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, before_send);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, req);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) dialer_connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) dialer_request_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "pg_dialer/" PG_DIALER_VERSION);
	http_add_header(req, "Expect:");
}

/*
 * As http_prepare, for a GET (reconciliation lookups).  A GET changes nothing
 * at the provider, so libcurl may send it again on a fresh connection.
 */
void
http_prepare_get(HttpRequest *req, const char *url)
{
	http_prepare(req, url);
	curl_easy_setopt(req->transfer->easy, CURLOPT_HTTPGET, 1L);
	req->send_once = false;
}

/*
 * Adds a request header.  The formatted text is copied by curl_slist_append.
 */
void
http_add_header(HttpRequest *req, const char *fmt,...)
{
	char		buf[1024];
	va_list		ap;
	struct curl_slist *l;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	l = curl_slist_append(req->transfer->headers, buf);
	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pg_dialer could not add a request header")));
	req->transfer->headers = l;
}

/*
 * HTTP Basic authentication with user and password (set once per request).
 */
void
http_set_basic_auth(HttpRequest *req, const char *user, const char *password)
{
	curl_easy_setopt(req->transfer->easy, CURLOPT_USERNAME, user);
	curl_easy_setopt(req->transfer->easy, CURLOPT_PASSWORD, password);
}

/*
 * An "Authorization: Bearer" header with token; nothing when token is NULL.
 */
void
http_set_bearer_auth(HttpRequest *req, const char *token)
{
	if (token)
		http_add_header(req, "Authorization: Bearer %s", token);
}

/*
 * s URL-encoded (every byte but letters, digits and -._~ as %XX), palloc'd
 * in the current memory context.  NULL encodes as the empty string.
 */
char *
http_escape(const char *s)
{
	char	   *e = curl_easy_escape(NULL, s ? s : "", 0);
	char	   *result;

	if (e == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("pg_dialer could not URL-encode a request field")));
	result = pstrdup(e);
	curl_free(e);
	return result;
}

/*
 * Sets the request body (copied by curl) and its content type.
 */
void
http_set_body(HttpRequest *req, const char *body, const char *content_type)
{
	http_add_header(req, "Content-Type: %s", content_type);
	curl_easy_setopt(req->transfer->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	curl_easy_setopt(req->transfer->easy, CURLOPT_COPYPOSTFIELDS, body);
}

/*
 * Hands a prepared request to the multi handle.
 */
void
http_start(HttpRequest *req)
{
	CURLMcode	rc;

	curl_easy_setopt(req->transfer->easy, CURLOPT_HTTPHEADER, req->transfer->headers);
	rc = curl_multi_add_handle(multi, req->transfer->easy);
	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("pg_dialer could not start a request: %s", curl_multi_strerror(rc))));
	if (req->started_at == 0)
		req->started_at = GetCurrentTimestamp();
	dlist_push_tail(&in_flight, &req->node);
	n_in_flight++;
}

/*
 * Sizes libcurl's connection cache to the concurrency, so connections are
 * kept alive and reused across bursts of calls.
 */
void
http_set_limit(int cap)
{
	static int	current = -1;

	if (cap == current)
		return;
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) cap);
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) cap);
	current = cap;
}

/*
 * Lets curl start what was just added and act on what is ready, without
 * waiting: a new request's bytes leave now, not at the next wait.
 */
void
http_kick(void)
{
	progress();
}

int
http_in_flight(void)
{
	return n_in_flight;
}

/*
 * Lets curl make progress, waiting up to timeout_ms (-1: no limit) for one of
 * its sockets, its next timeout or the latch, whichever comes first.  Does not
 * wait when a transfer has finished and is not collected yet, or when nothing
 * is in flight.
 */
void
http_wait(long timeout_ms)
{
	WaitEvent	event;

	progress();
	if (n_in_flight == 0 || n_running < n_in_flight || timeout_ms == 0)
		return;
	if (curl_timer_at != 0)
	{
		long		secs;
		int			usecs;
		long		until_timer;

		TimestampDifference(GetCurrentTimestamp(), curl_timer_at, &secs, &usecs);
		until_timer = secs * 1000 + (usecs + 999) / 1000;
		timeout_ms = timeout_ms < 0 ? until_timer : Min(timeout_ms, until_timer);
	}
	(void) WaitEventSetWait(waits, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
	progress();
}

/*
 * True for transport errors that mean the request never reached the provider
 * (nothing was sent), so sending it again cannot place a second call.
 */
static bool
transport_error_before_send(CURLcode code)
{
	switch (code)
	{
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_COULDNT_CONNECT:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
			return true;
		default:
			return false;
	}
}

/*
 * Records on req what became of its transfer: whether it completed, timed
 * out or failed before a byte was written, its HTTP status and what failed.
 */
static void
note_transfer_end(HttpRequest *req, CURLcode result)
{
	CURL	   *easy = req->transfer->easy;
	long		request_size = 0;

	req->completed = (result == CURLE_OK);
	req->timed_out = (result == CURLE_OPERATION_TIMEDOUT);
	req->status = 0;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &req->status);
	if (req->retry_after_s >= 0)
	{
		/* libcurl reads "120", and an HTTP date as seconds from now */
		curl_off_t	retry_after = 0;

		if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK)
			req->retry_after_s = (int) Min(Max(retry_after, 0), 86400);
	}
	/* nothing was written to the wire: sending again cannot repeat it */
	curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &request_size);
	req->sent_nothing = !req->completed &&
		(transport_error_before_send(result) || request_size == 0);
	if (req->completed)
		req->error = "";
	else
		req->error = req->errbuf[0] ? req->errbuf : curl_easy_strerror(result);
}

/*
 * The next finished request, removed from the multi handle (its easy handle is
 * kept for a possible next phase), with what became of it noted on it; or
 * NULL.
 */
HttpRequest *
http_next_done(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		HttpRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		note_transfer_end(req, msg->data.result);
		curl_multi_remove_handle(multi, msg->easy_handle);
		dlist_delete(&req->node);
		n_in_flight--;
		return req;
	}
	return NULL;
}

/*
 * Any request still in flight (for abandoning them at shutdown), removed from
 * the multi handle; NULL when none is left.
 */
HttpRequest *
http_first_in_flight(void)
{
	HttpRequest *req;

	if (dlist_is_empty(&in_flight))
		return NULL;
	req = dlist_container(HttpRequest, node, dlist_pop_head_node(&in_flight));
	curl_multi_remove_handle(multi, req->transfer->easy);
	n_in_flight--;
	return req;
}

/*
 * Frees a finished request: its curl handle, headers and memory.
 */
void
http_release(HttpRequest *req)
{
	if (req->transfer->easy)
		curl_easy_cleanup(req->transfer->easy);
	if (req->transfer->headers)
		curl_slist_free_all(req->transfer->headers);
	MemoryContextDelete(req->cxt);
}
