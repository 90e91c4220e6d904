/*-------------------------------------------------------------------------
 *
 * http.h
 *	  The HTTP engine (http.c): one libcurl multi handle that runs every
 *	  request of the dispatcher at once.  libcurl itself is private to
 *	  http.c: a request is an HttpRequest, and what became of it is read from
 *	  the fields below once http_next_done() has returned it.
 *
 * Copyright (c) 2026, pg_dialer developers
 *
 * src/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DIALER_HTTP_H
#define DIALER_HTTP_H

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"

/* room for libcurl's error message (http.c checks that it fits) */
#define HTTP_ERROR_SIZE 256

/* the libcurl handle and headers of a request, known only to http.c */
typedef struct HttpTransfer HttpTransfer;

/*
 * A request.  It lives in its own memory context (cxt), deleted by
 * http_release().  A caller that needs more per request (the providers do)
 * makes HttpRequest the first member of its own struct and gives its size to
 * http_new_request().
 */
typedef struct HttpRequest
{
	dlist_node	node;
	MemoryContext cxt;
	HttpTransfer *transfer;
	TimestampTz started_at;
	/* the answer, filled in while the transfer runs */
	StringInfoData response;
	size_t		max_response;
	bool		too_large;		/* the body passed dialer.max_response_size */
	int			retry_after_s;	/* from a Retry-After header, -1 if none */
	char		errbuf[HTTP_ERROR_SIZE];	/* libcurl's own message, or "" */
	/* at most one send per request (see http.c before_send) */
	bool		send_once;		/* a POST: libcurl may not send it again */
	int			sends;			/* times libcurl was about to send it */
	bool		resend_refused; /* it was sent, the connection died, the
								 * re-send was stopped */
	/* set when the transfer ended (http_next_done) */
	bool		completed;		/* the transfer completed (an answer came) */
	bool		timed_out;		/* it ended at a connect or total timeout */
	bool		sent_nothing;	/* it failed before a byte was written */
	long		status;			/* HTTP status, 0 if none */
	const char *error;			/* what failed: errbuf, else libcurl's text
								 * for the error code; "" when completed */
} HttpRequest;

extern void http_init(void);
extern int	http_effective_concurrency(int wanted);
extern HttpRequest *http_new_request(Size size);
extern void http_prepare(HttpRequest *req, const char *url);
extern void http_prepare_get(HttpRequest *req, const char *url);
extern void http_add_header(HttpRequest *req, const char *fmt,...) pg_attribute_printf(2, 3);
extern void http_set_basic_auth(HttpRequest *req, const char *user, const char *password);
extern void http_set_bearer_auth(HttpRequest *req, const char *token);
extern void http_set_body(HttpRequest *req, const char *body, const char *content_type);
extern char *http_escape(const char *s);
extern void http_start(HttpRequest *req);
extern void http_set_limit(int cap);
extern int	http_in_flight(void);
extern void http_kick(void);
extern void http_wait(long timeout_ms);
extern HttpRequest *http_next_done(void);
extern HttpRequest *http_first_in_flight(void);
extern void http_release(HttpRequest *req);

#endif							/* DIALER_HTTP_H */
