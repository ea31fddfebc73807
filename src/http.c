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
#include "utils/memutils.h"

#include "http.h"

int			ma_http_connect_timeout_ms = 5000;
int			ma_http_timeout_ms = 30000;
bool		ma_http_follow_redirects = false;
char	   *ma_webhook_allowed_hosts = NULL;

static bool curl_ready = false;

/* Response body collected with malloc: palloc could longjmp through curl. */
typedef struct MaCurlBuffer
{
	char		data[MA_HTTP_MAX_RESPONSE + 1];
	size_t		len;
} MaCurlBuffer;

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
 * malloc'd body buffer, also when palloc fails.
 */
static void
copy_result(MaHttpResponse *resp, CURLcode rc, const char *errbuf,
			MaCurlBuffer *buf, const char *url)
{
	PG_TRY();
	{
		if (rc != CURLE_OK)
		{
			const char *msg = errbuf[0] ? errbuf : curl_easy_strerror(rc);

			/* curl names hosts, not paths; never pass on one quoting the URL. */
			if (strstr(msg, url) != NULL)
				msg = curl_easy_strerror(rc);
			resp->timed_out = (rc == CURLE_OPERATION_TIMEDOUT);
			resp->aborted = (rc == CURLE_ABORTED_BY_CALLBACK);
			resp->error = pstrdup(msg);
		}
		if (buf != NULL)
		{
			resp->body = palloc(buf->len + 1);
			memcpy(resp->body, buf->data, buf->len);
			resp->body[buf->len] = '\0';
			resp->body_len = buf->len;
		}
	}
	PG_FINALLY();
	{
		free(buf);
	}
	PG_END_TRY();
}

/*
 * Posts req and fills resp.  Never throws for transport problems: they are
 * reported in resp->error.  Must not run inside a transaction that holds locks
 * others need (the worker calls it with no transaction open).
 */
void
ma_http_post(const MaHttpRequest *req, MaHttpResponse *resp)
{
	CURL	   *curl = NULL;
	struct curl_slist *headers = NULL;
	MaCurlBuffer *buf = NULL;
	char		errbuf[CURL_ERROR_SIZE];
	CURLcode	rc = CURLE_OK;
	long		status = 0;
	char	   *reason;
	ListCell   *lc;

	memset(resp, 0, sizeof(*resp));
	if (!ma_http_url_allowed(req->url, &reason))
	{
		resp->error = reason;
		return;
	}

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			elog(ERROR, "could not initialize libcurl");
		curl_ready = true;
	}

	errbuf[0] = '\0';
	buf = malloc(sizeof(MaCurlBuffer));
	curl = curl_easy_init();
	if (buf == NULL || curl == NULL)
	{
		rc = CURLE_OUT_OF_MEMORY;
		goto done;
	}
	buf->len = 0;

	foreach(lc, req->headers)
	{
		struct curl_slist *n = curl_slist_append(headers, (char *) lfirst(lc));

		if (n == NULL)
		{
			rc = CURLE_OUT_OF_MEMORY;
			goto done;
		}
		headers = n;
	}
	/* No "Expect: 100-continue" round trip for large bodies. */
	{
		struct curl_slist *n = curl_slist_append(headers, "Expect:");

		if (n == NULL)
		{
			rc = CURLE_OUT_OF_MEMORY;
			goto done;
		}
		headers = n;
	}

#define SETOPT(opt, val) \
	do { if ((rc = curl_easy_setopt(curl, opt, val)) != CURLE_OK) goto done; } while (0)

	SETOPT(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SETOPT(CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	SETOPT(CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SETOPT(CURLOPT_NOSIGNAL, 1L);
	SETOPT(CURLOPT_ERRORBUFFER, errbuf);
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
	SETOPT(CURLOPT_HTTPHEADER, headers);
	SETOPT(CURLOPT_USERAGENT, "metric_anomaly/0.1.0");
	SETOPT(CURLOPT_WRITEFUNCTION, write_cb);
	SETOPT(CURLOPT_WRITEDATA, buf);
	SETOPT(CURLOPT_XFERINFOFUNCTION, progress_cb);
	SETOPT(CURLOPT_NOPROGRESS, 0L);
#undef SETOPT

	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);

done:
	if (curl)
		curl_easy_cleanup(curl);
	curl_slist_free_all(headers);
	resp->status = status;
	copy_result(resp, rc, errbuf, buf, req->url);
}
