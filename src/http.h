/*
 * http.h
 *		Outbound transfers with libcurl for the delivery worker and
 *		test_channel(): an HTTP POST (http/https only) or an SMTP submission
 *		(smtp/smtps only, TLS required unless the request relaxes it),
 *		timeouts from settings, aborted when the process is asked to stop.
 *		One blocking call, and a set of concurrent transfers driven by
 *		libcurl's multi interface.
 */
#ifndef MA_HTTP_H
#define MA_HTTP_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* Largest response body kept (the rest is read and dropped). */
#define MA_HTTP_MAX_RESPONSE	16384

/* What a request is sent with; each allows its own URL schemes only. */
typedef enum MaTransport
{
	MA_TRANSPORT_HTTP = 0,		/* POST over http or https */
	MA_TRANSPORT_SMTP			/* mail submission over smtp or smtps */
} MaTransport;

typedef struct MaHttpRequest
{
	MaTransport transport;
	char	   *url;			/* a secret: never logged */
	List	   *headers;		/* HTTP only: of char *, "Name: value" */
	char	   *body;			/* HTTP: the POST body; SMTP: the whole message */
	size_t		body_len;
	/* SMTP only */
	char	   *mail_from;		/* envelope sender (a bare address) */
	List	   *mail_rcpt;		/* of char *, envelope recipients */
	char	   *username;		/* secret, or NULL: no AUTH */
	char	   *password;		/* secret */
	bool		tls_required;	/* STARTTLS or smtps, else the transfer fails */
} MaHttpRequest;

typedef struct MaHttpResponse
{
	long		status;			/* HTTP status or last SMTP reply code, 0 when
								 * there was no answer */
	bool		timed_out;		/* connect or total timeout hit */
	bool		tls_missing;	/* SMTP: TLS required, the server offers none */
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
extern MaHttpRequest *ma_smtp_request_new(const char *url, const char *mail_from);
extern bool ma_http_url_allowed(const char *url, char **reason);
extern bool ma_transport_url_allowed(const char *url, MaTransport transport, char **reason);
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
