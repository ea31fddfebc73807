/*
 * http.h
 *		Blocking HTTP POST with libcurl, for the delivery worker and
 *		test_channel(): http/https only, timeouts from settings, aborted when
 *		the process is asked to stop.
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
	char	   *error;			/* transport error (no URL in it), or NULL */
	char	   *body;			/* NUL-terminated, at most MA_HTTP_MAX_RESPONSE */
	size_t		body_len;
} MaHttpResponse;

/* Settings, defined in ma_alert_define_gucs(). */
extern int	ma_http_connect_timeout_ms;
extern int	ma_http_timeout_ms;
extern bool ma_http_follow_redirects;
extern char *ma_webhook_allowed_hosts;

extern MaHttpRequest *ma_http_request_new(const char *url, const char *content_type);
extern void ma_http_add_header(MaHttpRequest *req, const char *name, const char *value);
extern bool ma_http_url_allowed(const char *url, char **reason);
extern void ma_http_post(const MaHttpRequest *req, MaHttpResponse *resp);

#endif							/* MA_HTTP_H */
