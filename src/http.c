/*
 * http.c
 *		Outbound transfers with libcurl: an HTTP POST, or an SMTP submission.
 *
 * Used by the delivery worker outside any transaction and by test_channel()
 * in a backend.  An HTTP request may use only http and https (also after
 * redirects, which are off unless metric_anomaly.alert_follow_redirects is
 * on); an SMTP one only smtp and smtps, with TLS required (smtps, or
 * STARTTLS: CURLUSESSL_ALL) unless the request relaxes it, and never a
 * redirect.  Both obey metric_anomaly.webhook_allowed_hosts.  Connect and
 * total timeouts come from settings; the transfer is aborted from the progress
 * callback when the process is asked to stop or cancel.  libcurl memory is
 * not palloc'd: the handle, header list and response buffer are freed on every
 * path, and results are copied into palloc'd memory at the end.  URLs carry
 * secrets (tokens in paths and queries), so they never appear in messages.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "http.h"

/* Settings. */
static int	ma_http_connect_timeout_ms = 5000;
int			ma_http_timeout_ms = 30000;
static bool ma_http_follow_redirects = false;
static char *ma_webhook_allowed_hosts = NULL;

static bool curl_ready = false;

/* Response body collected with malloc: palloc could longjmp through curl. */
typedef struct MaCurlBuffer
{
	char		data[MA_HTTP_MAX_RESPONSE + 1];
	size_t		len;
} MaCurlBuffer;

/*
 * One transfer and everything libcurl holds for it, malloc'd so that it
 * outlives the caller's memory contexts while in flight.  The request itself
 * (URL, body) belongs to the caller and must live until the transfer is done.
 */
typedef struct Transfer
{
	CURL	   *curl;
	struct curl_slist *headers;
	struct curl_slist *rcpts;	/* SMTP envelope recipients */
	const MaHttpRequest *req;	/* the body an SMTP upload reads */
	size_t		read_pos;
	MaCurlBuffer buf;
	char		errbuf[CURL_ERROR_SIZE];
	CURLcode	rc;
	bool		refused;
	char		reason[256];	/* why a refused URL was not sent */
	const char *url;
	void	   *tag;
	struct Transfer *next;		/* in the finished queue */
} Transfer;

static CURLM *multi = NULL;
static int	running = 0;		/* transfers started and not yet returned */
static Transfer *finished_head = NULL;
static Transfer *finished_tail = NULL;

/* Defines the settings of outbound HTTP; called from _PG_init. */
void
ma_http_define_gucs(void)
{
	DefineCustomIntVariable("metric_anomaly.alert_connect_timeout",
							"Time allowed to connect to an alert endpoint.",
							NULL,
							&ma_http_connect_timeout_ms,
							5000, 100, 300000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("metric_anomaly.alert_timeout",
							"Time allowed for one HTTP request to an alert endpoint, connection included.",
							NULL,
							&ma_http_timeout_ms,
							30000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("metric_anomaly.alert_follow_redirects",
							 "Follow HTTP redirects of alert endpoints (http and https only; never with an allowlist).",
							 NULL,
							 &ma_http_follow_redirects,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("metric_anomaly.webhook_allowed_hosts",
							   "Comma-separated hosts alert channels may reach; a leading dot allows subdomains; empty allows any.",
							   "Only superusers can change it.",
							   &ma_webhook_allowed_hosts,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);
}

/*
 * Creates a POST request to url with the given Content-Type, in the current
 * memory context.
 */
MaHttpRequest *
ma_http_request_new(const char *url, const char *content_type)
{
	MaHttpRequest *req = palloc0(sizeof(MaHttpRequest));

	req->url = pstrdup(url);
	if (content_type)
		ma_http_add_header(req, "Content-Type", content_type);
	return req;
}

/*
 * Creates an SMTP submission to url (smtp:// or smtps://) from the envelope
 * sender mail_from, TLS required; the caller adds recipients to mail_rcpt,
 * sets the message as body and may set credentials.
 */
MaHttpRequest *
ma_smtp_request_new(const char *url, const char *mail_from)
{
	MaHttpRequest *req = palloc0(sizeof(MaHttpRequest));

	req->transport = MA_TRANSPORT_SMTP;
	req->url = pstrdup(url);
	req->mail_from = pstrdup(mail_from);
	req->tls_required = true;
	return req;
}

/* Adds a header; name and value must not contain CR or LF. */
void
ma_http_add_header(MaHttpRequest *req, const char *name, const char *value)
{
	if (strpbrk(name, "\r\n") || strpbrk(value, "\r\n"))
		elog(ERROR, "HTTP header must not contain line breaks");
	req->headers = lappend(req->headers, psprintf("%s: %s", name, value));
}

/*
 * Does host match one entry of the comma-separated allowlist?  An entry
 * starting with a dot matches that domain's subdomains.
 */
static bool
host_in_list(const char *host, const char *list)
{
	const char *p = list;
	size_t		hlen = strlen(host);

	while (*p)
	{
		const char *start;
		size_t		len;

		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		start = p;
		while (*p && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		len = p - start;
		if (len == 0)
			continue;
		if (start[0] == '.')
		{
			if (hlen > len && pg_strncasecmp(host + hlen - len, start, len) == 0)
				return true;
		}
		else if (hlen == len && pg_strncasecmp(host, start, len) == 0)
			return true;
	}
	return false;
}

/* Checks an HTTP request's url: see ma_transport_url_allowed(). */
bool
ma_http_url_allowed(const char *url, char **reason)
{
	return ma_transport_url_allowed(url, MA_TRANSPORT_HTTP, reason);
}

/*
 * Checks that url uses a scheme of the transport (http or https; smtp or
 * smtps) and, when metric_anomaly.webhook_allowed_hosts is set, that its
 * host is on the list.  On refusal returns false with a reason that does not
 * repeat the URL.
 */
bool
ma_transport_url_allowed(const char *url, MaTransport transport, char **reason)
{
	const char *s1 = transport == MA_TRANSPORT_SMTP ? "smtp" : "http";
	const char *s2 = transport == MA_TRANSPORT_SMTP ? "smtps" : "https";

	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *host = NULL;
	bool		ok = true;

	*reason = NULL;
	u = curl_url();
	if (u == NULL)
		elog(ERROR, "out of memory in libcurl");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
	{
		*reason = pstrdup("url is not a valid URL");
		ok = false;
	}
	else if (pg_strcasecmp(scheme, s1) != 0 && pg_strcasecmp(scheme, s2) != 0)
	{
		*reason = psprintf("url must use %s or %s", s1, s2);
		ok = false;
	}
	else if (ma_webhook_allowed_hosts && ma_webhook_allowed_hosts[0] != '\0' &&
			 !host_in_list(host, ma_webhook_allowed_hosts))
	{
		*reason = psprintf("host \"%s\" is not in metric_anomaly.webhook_allowed_hosts", host);
		ok = false;
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

/* Keeps the first MA_HTTP_MAX_RESPONSE bytes of the response body. */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	MaCurlBuffer *buf = (MaCurlBuffer *) userdata;
	size_t		n = size * nmemb;
	size_t		room = MA_HTTP_MAX_RESPONSE - buf->len;
	size_t		take = n < room ? n : room;

	memcpy(buf->data + buf->len, ptr, take);
	buf->len += take;
	return n;
}

/* Hands libcurl the next piece of an SMTP message. */
static size_t
read_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Transfer   *t = (Transfer *) userdata;
	size_t		room = size * nmemb;
	size_t		left = t->req->body_len - t->read_pos;
	size_t		take = left < room ? left : room;

	memcpy(ptr, t->req->body + t->read_pos, take);
	t->read_pos += take;
	return take;
}

/* Aborts the transfer when the process must stop or the query is cancelled. */
static int
progress_cb(void *clientp, curl_off_t dltotal, curl_off_t dlnow,
			curl_off_t ultotal, curl_off_t ulnow)
{
	if (ProcDiePending || QueryCancelPending)
		return 1;
	return 0;
}

/*
 * Copies the outcome of a transfer into palloc'd memory of resp and frees the
 * transfer, also when palloc fails.
 */
static void
finish_transfer(Transfer *t, MaHttpResponse *resp)
{
	long		status = 0;

	memset(resp, 0, sizeof(*resp));
	/* an SMTP failure's reply code says whether it is temporary (4xx) */
	if (t->curl != NULL && (t->rc == CURLE_OK || t->req->transport == MA_TRANSPORT_SMTP))
		curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
	resp->status = status;
	resp->tls_missing = (t->rc == CURLE_USE_SSL_FAILED);
	PG_TRY();
	{
		if (t->refused)
		{
			resp->refused = true;
			resp->error = pstrdup(t->reason);
		}
		else if (t->rc != CURLE_OK)
		{
			const char *msg = t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->rc);

			/* curl names hosts, not paths; never pass on one quoting the URL. */
			if (strstr(msg, t->url) != NULL)
				msg = curl_easy_strerror(t->rc);
			resp->timed_out = (t->rc == CURLE_OPERATION_TIMEDOUT);
			resp->aborted = (t->rc == CURLE_ABORTED_BY_CALLBACK);
			/* curl says "Weird server reply" for a refused message: add the code */
			if (t->req->transport == MA_TRANSPORT_SMTP && status >= 400)
				resp->error = psprintf("%s (SMTP reply %ld)", msg, status);
			else
				resp->error = pstrdup(msg);
		}
		resp->body = palloc(t->buf.len + 1);
		memcpy(resp->body, t->buf.data, t->buf.len);
		resp->body[t->buf.len] = '\0';
		resp->body_len = t->buf.len;
	}
	PG_FINALLY();
	{
		if (t->curl)
			curl_easy_cleanup(t->curl);
		curl_slist_free_all(t->headers);
		curl_slist_free_all(t->rcpts);
		free(t);
	}
	PG_END_TRY();
}

/* Appends one header line to the transfer's list. */
static CURLcode
append_header(Transfer *t, const char *line)
{
	struct curl_slist *n = curl_slist_append(t->headers, line);

	if (n == NULL)
		return CURLE_OUT_OF_MEMORY;
	t->headers = n;
	return CURLE_OK;
}

#define SETOPT(opt, val) \
	do { if ((rc = curl_easy_setopt(t->curl, opt, val)) != CURLE_OK) return rc; } while (0)

/* The options of an HTTP POST: protocols, redirects, body and headers. */
static CURLcode
setup_http(Transfer *t, const MaHttpRequest *req)
{
	CURLcode	rc;
	ListCell   *lc;

	foreach(lc, req->headers)
	{
		if ((rc = append_header(t, (char *) lfirst(lc))) != CURLE_OK)
			return rc;
	}
	/* No "Expect: 100-continue" round trip for large bodies. */
	if ((rc = append_header(t, "Expect:")) != CURLE_OK)
		return rc;
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	SETOPT(CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* Redirects could leave the allowlist, so they stay off with one. */
	if (ma_http_follow_redirects &&
		(ma_webhook_allowed_hosts == NULL || ma_webhook_allowed_hosts[0] == '\0'))
	{
		SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
		SETOPT(CURLOPT_MAXREDIRS, 5L);
		SETOPT(CURLOPT_POSTREDIR, (long) CURL_REDIR_POST_ALL);
	}
	else
		SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_POST, 1L);
	SETOPT(CURLOPT_POSTFIELDS, req->body ? req->body : "");
	SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (req->body ? req->body_len : 0));
	SETOPT(CURLOPT_HTTPHEADER, t->headers);
	SETOPT(CURLOPT_USERAGENT, "metric_anomaly/0.2.0");
	return CURLE_OK;
}

/*
 * The options of an SMTP submission: smtp/smtps only, the envelope, the
 * message read from the request, credentials, and TLS: CURLUSESSL_ALL makes
 * a plain smtp:// server that offers no STARTTLS fail the transfer
 * (CURLE_USE_SSL_FAILED) before anything, credentials included, is sent.
 */
static CURLcode
setup_smtp(Transfer *t, const MaHttpRequest *req)
{
	CURLcode	rc;
	ListCell   *lc;

	foreach(lc, req->mail_rcpt)
	{
		struct curl_slist *n = curl_slist_append(t->rcpts, (char *) lfirst(lc));

		if (n == NULL)
			return CURLE_OUT_OF_MEMORY;
		t->rcpts = n;
	}
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_SMTP | CURLPROTO_SMTPS));
#endif
	SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
	SETOPT(CURLOPT_USE_SSL, (long) (req->tls_required ? CURLUSESSL_ALL : CURLUSESSL_NONE));
	SETOPT(CURLOPT_MAIL_FROM, req->mail_from);
	SETOPT(CURLOPT_MAIL_RCPT, t->rcpts);
	if (req->username != NULL)
	{
		SETOPT(CURLOPT_USERNAME, req->username);
		SETOPT(CURLOPT_PASSWORD, req->password ? req->password : "");
	}
	SETOPT(CURLOPT_UPLOAD, 1L);
	SETOPT(CURLOPT_READFUNCTION, read_cb);
	SETOPT(CURLOPT_READDATA, (void *) t);
	SETOPT(CURLOPT_INFILESIZE_LARGE, (curl_off_t) req->body_len);
	return CURLE_OK;
}

/*
 * Creates the easy handle of a transfer with every option of the house:
 * timeouts, the error and response buffers, the progress callback that
 * aborts when the process must stop, then those of the transport.
 */
static CURLcode
setup_transfer(Transfer *t, const MaHttpRequest *req)
{
	CURLcode	rc;

	t->curl = curl_easy_init();
	if (t->curl == NULL)
		return CURLE_OUT_OF_MEMORY;
	SETOPT(CURLOPT_URL, req->url);
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long) ma_http_connect_timeout_ms);
	SETOPT(CURLOPT_TIMEOUT_MS, (long) ma_http_timeout_ms);
	SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(CURLOPT_WRITEDATA, &t->buf);
	SETOPT(CURLOPT_XFERINFOFUNCTION, progress_cb);
	SETOPT(CURLOPT_NOPROGRESS, 0L);
	SETOPT(CURLOPT_PRIVATE, (void *) t);
	if (req->transport == MA_TRANSPORT_SMTP)
		return setup_smtp(t, req);
	return setup_http(t, req);
}

#undef SETOPT

/*
 * A zeroed transfer for req, or one already marked refused when the URL is
 * not allowed (then nothing is sent).  Initialises libcurl on first use.
 */
static Transfer *
new_transfer(const MaHttpRequest *req, void *tag)
{
	Transfer   *t;
	char	   *reason;

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "could not initialize libcurl");
		curl_ready = true;
	}
	t = calloc(1, sizeof(Transfer));

	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	t->url = req->url;
	t->req = req;
	t->tag = tag;
	if (!ma_transport_url_allowed(req->url, req->transport, &reason))
	{
		t->refused = true;
		strlcpy(t->reason, reason, sizeof(t->reason));
	}
	return t;
}

/*
 * Sends req (a POST or an SMTP submission) and fills resp.  Never throws for transport problems: they are
 * reported in resp->error.  Must not run inside a transaction that holds locks
 * others need (test_channel() runs it in the caller's session).
 */
void
ma_http_post(const MaHttpRequest *req, MaHttpResponse *resp)
{
	Transfer   *t = new_transfer(req, NULL);

	if (!t->refused)
	{
		t->rc = setup_transfer(t, req);
		if (t->rc == CURLE_OK)
			t->rc = curl_easy_perform(t->curl);
	}
	finish_transfer(t, resp);
}

/* Queues a transfer whose outcome is known for ma_http_multi_done(). */
static void
queue_finished(Transfer *t)
{
	t->next = NULL;
	if (finished_tail)
		finished_tail->next = t;
	else
		finished_head = t;
	finished_tail = t;
}

/*
 * Starts a transfer on the shared multi handle (see http.h).  A refused URL
 * or a failed set-up is queued as finished at once, so the caller always gets
 * exactly one answer per started transfer.
 */
void
ma_http_multi_start(const MaHttpRequest *req, void *tag)
{
	Transfer   *t = new_transfer(req, tag);

	if (multi == NULL && (multi = curl_multi_init()) == NULL)
		elog(ERROR, "could not initialize libcurl multi handle");
	running++;
	if (t->refused)
	{
		queue_finished(t);
		return;
	}
	t->rc = setup_transfer(t, req);
	if (t->rc == CURLE_OK &&
		curl_multi_add_handle(multi, t->curl) != CURLM_OK)
		t->rc = CURLE_OUT_OF_MEMORY;
	if (t->rc != CURLE_OK)
		queue_finished(t);
}

/* Moves finished transfers from libcurl to the finished queue. */
static void
collect_finished(void)
{
	CURLMsg    *m;
	int			left;

	while ((m = curl_multi_info_read(multi, &left)) != NULL)
	{
		Transfer   *t = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		t->rc = m->data.result;
		curl_multi_remove_handle(multi, m->easy_handle);
		queue_finished(t);
	}
}

/*
 * Drives every transfer and waits up to timeout_ms for socket activity (less
 * when one finishes sooner); returns at once when an outcome is queued.
 */
void
ma_http_multi_wait(int timeout_ms)
{
	int			still;

	if (multi == NULL || finished_head != NULL)
		return;
	curl_multi_perform(multi, &still);
	collect_finished();
	if (finished_head != NULL || still == 0)
		return;
	curl_multi_poll(multi, NULL, 0, timeout_ms, NULL);
	curl_multi_perform(multi, &still);
	collect_finished();
}

/*
 * Returns the next finished transfer: its tag, and its outcome in palloc'd
 * memory of the current context.  False when none has finished.
 */
bool
ma_http_multi_done(void **tag, MaHttpResponse *resp)
{
	Transfer   *t = finished_head;

	if (t == NULL)
		return false;
	finished_head = t->next;
	if (finished_head == NULL)
		finished_tail = NULL;
	running--;
	*tag = t->tag;
	finish_transfer(t, resp);
	return true;
}

/* Transfers started and not yet returned by ma_http_multi_done(). */
int
ma_http_multi_running(void)
{
	return running;
}
