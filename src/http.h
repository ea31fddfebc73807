/*
 * http.h
 *		HTTP POST with libcurl for the delivery worker and test_channel():
 *		http/https only, timeouts from settings, aborted when the process is
 *		asked to stop.  One blocking call, and a set of concurrent transfers
 *		driven by libcurl's multi interface.
 */
#ifndef MA_HTTP_H
#define MA_HTTP_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* Largest response body kept (the rest is read and dropped). */
#define MA_HTTP_MAX_RESPONSE	16384

typedef struct MaHttpRequest
{
	char	   *url;			/* a secret: never logged */
	List	   *headers;		/* of char *, "Name: value" */
	char	   *body;
	size_t		body_len;
} MaHttpRequest;

typedef struct MaHttpResponse
{
	long		status;			/* HTTP status, 0 when there was no answer */
	bool		timed_out;		/* connect or total timeout hit */
	bool		aborted;		/* stopped because the process must stop */
	bool		refused;		/* never sent: the URL is not allowed */
	char	   *error;			/* transport error (no URL in it), or NULL */
	char	   *body;			/* NUL-terminated, at most MA_HTTP_MAX_RESPONSE */
	size_t		body_len;
} MaHttpResponse;

/* Settings of outbound HTTP; called from _PG_init. */
extern void ma_http_define_gucs(void);
extern int	ma_http_timeout_ms;

extern MaHttpRequest *ma_http_request_new(const char *url, const char *content_type);
extern void ma_http_add_header(MaHttpRequest *req, const char *name, const char *value);
extern bool ma_http_url_allowed(const char *url, char **reason);
extern void ma_http_post(const MaHttpRequest *req, MaHttpResponse *resp);

/*
 * Concurrent transfers.  A transfer is started with a caller's tag; the
 * request must stay valid until the transfer is returned by
 * ma_http_multi_done().  ma_http_multi_wait() moves every transfer on and
 * waits at most timeout_ms for one to progress; it does no I/O of its own
 * beyond that, so callers run it with no transaction open.
 */
extern void ma_http_multi_start(const MaHttpRequest *req, void *tag);
extern void ma_http_multi_wait(int timeout_ms);
extern bool ma_http_multi_done(void **tag, MaHttpResponse *resp);
extern int	ma_http_multi_running(void);

#endif							/* MA_HTTP_H */
