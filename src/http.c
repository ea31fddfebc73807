/*
 * http.c
 *		One blocking HTTP POST with libcurl.
 *
 * Used by the delivery worker outside any transaction and by test_channel()
 * in a backend.  Only http and https are allowed (also after redirects, which
 * are off unless metric_anomaly.alert_follow_redirects is on); connect and
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

/*
 * Checks that url is http(s) and, when metric_anomaly.webhook_allowed_hosts
 * is set, that its host is on the list.  On refusal returns false with a
 * reason that does not repeat the URL.
 */
bool
ma_http_url_allowed(const char *url, char **reason)
{
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
	else if (pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0)
	{
		*reason = pstrdup("url must use http or https");
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
	if (t->curl != NULL && t->rc == CURLE_OK)
		curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
	resp->status = status;
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

/*
 * Creates the easy handle of a transfer with every option of the house:
 * protocols, timeouts, redirects, body, headers, the response buffer and the
 * progress callback that aborts when the process must stop.
 */
static CURLcode
setup_transfer(Transfer *t, const MaHttpRequest *req)
{
	CURL	   *curl;
	CURLcode	rc;
	ListCell   *lc;

	t->curl = curl = curl_easy_init();
	if (curl == NULL)
		return CURLE_OUT_OF_MEMORY;
	foreach(lc, req->headers)
	{
		if ((rc = append_header(t, (char *) lfirst(lc))) != CURLE_OK)
			return rc;
	}
	/* No "Expect: 100-continue" round trip for large bodies. */
	if ((rc = append_header(t, "Expect:")) != CURLE_OK)
		return rc;

#define SETOPT(opt, val) \
	do { if ((rc = curl_easy_setopt(curl, opt, val)) != CURLE_OK) return rc; } while (0)

	SETOPT(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	SETOPT(CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
	SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long) ma_http_connect_timeout_ms);
	SETOPT(CURLOPT_TIMEOUT_MS, (long) ma_http_timeout_ms);
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
	SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(CURLOPT_WRITEDATA, &t->buf);
	SETOPT(CURLOPT_XFERINFOFUNCTION, progress_cb);
	SETOPT(CURLOPT_NOPROGRESS, 0L);
	SETOPT(CURLOPT_PRIVATE, (void *) t);
#undef SETOPT
	return CURLE_OK;
}

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
	t->tag = tag;
	if (!ma_http_url_allowed(req->url, &reason))
	{
		t->refused = true;
		strlcpy(t->reason, reason, sizeof(t->reason));
	}
	return t;
}

/*
 * Posts req and fills resp.  Never throws for transport problems: they are
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
