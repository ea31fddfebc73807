/*
 * channel.c
 *		The channel kinds' table, the steps of a delivery and the judging of
 *		answers, the escaping of alert text per target, and the building
 *		blocks the kinds share (encodings, signatures, small JSON reads).
 *
 * The kinds live in src/channel/, one file each (see channel_kind.h).  What
 * is decided here, once for every kind, is what an HTTP answer means:
 * transport errors, timeouts, 408, 429 and 5xx are retried; 3xx (redirects
 * are not followed), other 4xx and refused URLs are given up; a 2xx answer is
 * then judged by the kind (the chat platforms answer 200 with an error code
 * in the body).  An SMTP submission (the email kind) succeeds or fails as a
 * whole: TLS required but not offered, and 5xx replies, are given up; every
 * other failure (4xx replies, connections) is retried.  No SPI, no network.
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "common/md5.h"
#include "common/shortest_dec.h"
#include "lib/stringinfo.h"

#include "channel.h"
#include "channel/channel_kind.h"
#include "pg_compat.h"
#include "sha2.h"

/* Every kind; alert_channels.kind's CHECK lists the same names. */
static const MaChannelKind *const kinds[] = {
	&ma_kind_webhook,
	&ma_kind_slack,
	&ma_kind_slack_bot,
	&ma_kind_wecom,
	&ma_kind_feishu,
	&ma_kind_dingtalk,
	&ma_kind_email,
};

/* See channel.h. */
const MaChannelKind *
ma_channel_kind_by_name(const char *name)
{
	for (int i = 0; i < lengthof(kinds); i++)
	{
		if (strcmp(name, kinds[i]->name) == 0)
			return kinds[i];
	}
	return NULL;
}

/* See channel.h. */
bool
ma_channel_carries_images(const MaChannel *ch)
{
	return ch->chart && ch->kind->carries_images &&
		(ch->kind->images_configured == NULL || ch->kind->images_configured(ch));
}

/* See channel.h. */
bool
ma_channel_url_allowed(const MaChannel *ch, char **reason)
{
	return ma_transport_url_allowed(ch->url, ch->kind->transport, reason);
}

/*
 * See channel.h.  A rate_limit that is not a non-negative integer falls back
 * to the kind's limit: a typo in one channel's options must not stop its
 * deliveries, nor open it to a 429 storm.
 */
int
ma_channel_rate_limit(const MaChannel *ch)
{
	long		limit;

	if (ma_json_int_field(ch->options, "rate_limit", &limit) &&
		limit >= 0 && limit <= 100000)
		return (int) limit;
	return ch->kind->rate_per_minute;
}

/* See channel.h. */
MaHttpRequest *
ma_channel_next_request(const MaChannel *ch, const MaAlertMessage *msg,
						int step, const char *state, int64 now_ms)
{
	MaAlertMessage m = *msg;

	/* a kind sees a chart only when it is to send one */
	if (!ma_channel_carries_images(ch))
	{
		m.png = NULL;
		m.png_len = 0;
	}
	return ch->kind->next_request(ch, &m, step, state, now_ms);
}

/* See channel.h and the file header. */
MaVerdict
ma_channel_judge(const MaChannel *ch, const MaAlertMessage *msg, int step,
				 const MaHttpResponse *resp, char **state, char **err)
{
	MaAlertMessage m = *msg;

	*err = NULL;
	if (!ma_channel_carries_images(ch))
	{
		m.png = NULL;
		m.png_len = 0;
	}
	if (resp->refused)
	{
		*err = psprintf("request refused: %s", resp->error);
		return MA_GIVE_UP;
	}
	if (ch->kind->transport == MA_TRANSPORT_SMTP && resp->error == NULL)
		return ch->kind->accepted(ch, &m, step, resp, state, err) ? MA_ACCEPTED : MA_RETRY;
	if (resp->tls_missing)
	{
		*err = psprintf("TLS is required but the server does not offer it: %s", resp->error);
		return MA_GIVE_UP;
	}
	if (resp->error)
	{
		*err = psprintf("%s%s", resp->timed_out ? "timeout: " : "", resp->error);
		/* SMTP says permanent with 5xx; HTTP failures have no status */
		if (ch->kind->transport == MA_TRANSPORT_SMTP && resp->status >= 500)
			return MA_GIVE_UP;
		return MA_RETRY;
	}
	if (resp->status >= 300 && resp->status < 400)
	{
		*err = psprintf("HTTP status %ld (redirects are not followed)", resp->status);
		return MA_GIVE_UP;
	}
	if (resp->status < 200 || resp->status > 299)
	{
		*err = psprintf("HTTP status %ld", resp->status);
		if (resp->status >= 400 && resp->status < 500)
			return (resp->status == 408 || resp->status == 429) ? MA_RETRY : MA_GIVE_UP;
		return MA_RETRY;
	}
	if (ch->kind->accepted(ch, &m, step, resp, state, err))
		return MA_ACCEPTED;
	/* a platform's error code in a 200 answer: its outages say so too */
	return MA_RETRY;
}

/* A kind's accepted() for endpoints whose 2xx is the whole answer. */
bool
ma_channel_accept_any(const MaChannel *ch, const MaAlertMessage *msg, int step, const MaHttpResponse *resp,
					  char **state, char **err)
{
	return true;
}

/* ---------- escaping ---------- */

/* U+2060 WORD JOINER: invisible, but no parser sees a word boundary there. */
#define WORD_JOINER "\xE2\x81\xA0"

/* A byte of markup and the text that stands for it in one format. */
typedef struct MaEscape
{
	char		c;
	const char *with;
} MaEscape;

/* e-mail HTML: entities */
static const MaEscape html_escapes[] = {
	{'&', "&amp;"}, {'<', "&lt;"}, {'>', "&gt;"}, {'"', "&quot;"}, {'\'', "&#39;"}, {0, NULL}
};

/* Slack mrkdwn: the three entities Slack documents */
static const MaEscape slack_escapes[] = {
	{'&', "&amp;"}, {'<', "&lt;"}, {'>', "&gt;"}, {0, NULL}
};

/*
 * WeCom and DingTalk markdown: full-width look-alikes (U+FF1C, U+FF1E,
 * U+FF3B, U+FF3D, U+FF06), since their renderers decode entities.
 */
static const MaEscape markdown_escapes[] = {
	{'<', "\xEF\xBC\x9C"}, {'>', "\xEF\xBC\x9E"}, {'[', "\xEF\xBC\xBB"},
	{']', "\xEF\xBC\xBD"}, {'&', "\xEF\xBC\x86"}, {0, NULL}
};

/* Feishu text: the same look-alikes; & is not markup there */
static const MaEscape feishu_escapes[] = {
	{'<', "\xEF\xBC\x9C"}, {'>', "\xEF\xBC\x9E"}, {'[', "\xEF\xBC\xBB"},
	{']', "\xEF\xBC\xBD"}, {0, NULL}
};

/* e-mail text: no markup, only the rules common to every format */
static const MaEscape plain_escapes[] = {{0, NULL}};

static const MaEscape *
format_escapes(MaTextFormat fmt)
{
	switch (fmt)
	{
		case MA_TEXT_HTML:
			return html_escapes;
		case MA_TEXT_SLACK:
			return slack_escapes;
		case MA_TEXT_MARKDOWN:
			return markdown_escapes;
		case MA_TEXT_FEISHU:
			return feishu_escapes;
		case MA_TEXT_PLAIN:
		case MA_TEXT_JSON:
			break;
	}
	return plain_escapes;
}

/*
 * Appends the replacement of *p and returns true, or returns false when *p
 * stays as it is: first the format's markup, then the rules common to every
 * format.  See ma_channel_escape().
 */
static bool
escape_char(StringInfo buf, const char *p, const MaEscape *escapes)
{
	for (const MaEscape *e = escapes; e->c; e++)
	{
		if (*p == e->c)
		{
			appendStringInfoString(buf, e->with);
			return true;
		}
	}
	switch (*p)
	{
		case '\r':
		case '\n':
		case '\t':
			appendStringInfoChar(buf, ' ');
			return true;
		case '@':
			appendStringInfoString(buf, "@" WORD_JOINER);
			return true;
		case ':':
			if (p[1] != '/' || p[2] != '/')
				return false;
			appendStringInfoString(buf, ":" WORD_JOINER);
			return true;
		case '.':
			if (!((p[1] >= 'a' && p[1] <= 'z') || (p[1] >= 'A' && p[1] <= 'Z')))
				return false;
			appendStringInfoString(buf, "." WORD_JOINER);
			return true;
	}
	return false;
}

/*
 * Text from metric names, dimension values, rule names and summaries,
 * escaped for a target so that it can mention nobody and link nowhere:
 *	- Slack mrkdwn: & < > as the entities Slack documents, which ends every
 *	  <!channel>, <@U123>, <#C1> and <http://x|disguised> link;
 *	- WeCom and DingTalk markdown, Feishu text: < > [ ] (and & in markdown,
 *	  whose renderers decode entities) become their full-width look-alikes,
 *	  which ends <@userid>, <at user_id="all">, <font>, <a href> and
 *	  [text](url) links and reference definitions;
 *	- e-mail HTML: & < > " ' as entities (no tag, no attribute, no link);
 *	  e-mail text: nothing beyond the rules below;
 *	- in all of them line breaks become spaces (a name cannot start a
 *	  heading, quote or definition), and an invisible word joiner follows
 *	  every @ (no @all, @here, @channel or @<mobile>), the : of :// and a .
 *	  before a letter (bare URLs, domain names and, in mail clients, bare
 *	  addresses are not linked).
 * JSON (the generic webhook) is data, not markup, and is only JSON-escaped
 * where it is written.  Bytes of multibyte characters pass unchanged.
 */
char *
ma_channel_escape(const char *s, MaTextFormat fmt)
{
	const MaEscape *escapes;
	StringInfoData buf;

	if (fmt == MA_TEXT_JSON)
		return pstrdup(s);
	escapes = format_escapes(fmt);
	initStringInfo(&buf);
	for (const char *p = s; *p; p++)
	{
		if (!escape_char(&buf, p, escapes))
			appendStringInfoChar(&buf, *p);
	}
	return buf.data;
}

/* A value as its shortest exact decimal text. */
static char *
format_value(double v)
{
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v, num);
	return pstrdup(num);
}

/* "[FIRING] signup", "[RESOLVED] signup", "[REPORT] name" or "[TEST] signup", escaped. */
char *
ma_channel_title(const MaAlertMessage *msg, MaTextFormat fmt)
{
	const char *tag = msg->test ? "TEST" :
		(strcmp(msg->state, "firing") == 0 ? "FIRING" :
		 strcmp(msg->state, "report") == 0 ? "REPORT" : "RESOLVED");

	return psprintf("[%s] %s", tag, ma_channel_escape(msg->metric, fmt));
}

/* The three lines the chat kinds send: title, summary, facts. */
char *
ma_channel_text(const MaAlertMessage *msg, MaTextFormat fmt, const char *bold_open,
				const char *bold_close, const char *quote)
{
	return psprintf("%s%s%s\n%s%s\n%sminute: %s UTC, value: %s, source: %s",
					bold_open, ma_channel_title(msg, fmt), bold_close,
					quote, ma_channel_escape(msg->summary, fmt),
					quote, msg->minute, format_value(msg->value),
					ma_channel_escape(msg->source, fmt));
}

/* ---------- requests ---------- */

/* A POST to url carrying the Idempotency-Key every request carries. */
MaHttpRequest *
ma_channel_request(const char *url, const char *content_type, const MaAlertMessage *msg)
{
	MaHttpRequest *req = ma_http_request_new(url, content_type);

	ma_http_add_header(req, "Idempotency-Key", msg->idempotency_key);
	return req;
}

/* Makes buf the body of req. */
void
ma_channel_set_body(MaHttpRequest *req, StringInfo buf)
{
	req->body = buf->data;
	req->body_len = buf->len;
}

/* ---------- building blocks ---------- */

/* Standard base64 (with padding, no line breaks) of data. */
char *
ma_base64(const char *data, size_t len)
{
	int			enclen = pg_b64_enc_len((int) len);
	char	   *out = palloc(enclen + 1);
	int			n;

	n = pg_b64_encode(MA_B64_SRC(data), (int) len, out, enclen);
	if (n < 0)
		elog(ERROR, "could not encode base64");
	out[n] = '\0';
	return out;
}

/*
 * Base64 of data in lines of 76 characters, each ended by CRLF, as MIME
 * bodies must be (RFC 2045 6.8).
 */
void
ma_append_base64_lines(StringInfo buf, const char *data, size_t len)
{
	/* 57 bytes make 76 characters */
	for (size_t off = 0; off < len; off += 57)
	{
		size_t		n = Min(len - off, 57);

		appendStringInfoString(buf, ma_base64(data + off, n));
		appendStringInfoString(buf, "\r\n");
	}
}

/*
 * HMAC-SHA256 of msg with key into out (32 bytes), by sha2.c's HMAC, the
 * JWT code's: the server has an HMAC API only from 14 on (common/hmac.h),
 * and one implementation on every version is one that the JWT fixtures
 * test.
 */
void
ma_hmac_sha256(const char *key, size_t keylen, const char *msg, size_t msglen,
			   uint8 *out)
{
	ma_hmac_sha2(MA_SHA256, (const uint8_t *) key, keylen,
				 (const uint8_t *) msg, msglen, out);
}

/* Lower-case hex MD5 of data. */
char *
ma_md5_hex(const char *data, size_t len)
{
	uint8		sum[16];
	const char *errstr;

	if (!pg_md5_binary(data, len, sum, &errstr))
		elog(ERROR, "could not compute MD5: %s", errstr);
	return ma_hex(sum, sizeof(sum));
}

/* Lower-case hex of len bytes. */
char *
ma_hex(const uint8 *b, size_t len)
{
	char	   *hex = palloc(2 * len + 1);

	for (size_t i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", b[i]);
	return hex;
}

/* Percent-encodes everything but RFC 3986 unreserved characters. */
char *
ma_url_encode(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (const unsigned char *p = (const unsigned char *) s; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~')
			appendStringInfoChar(&buf, (char) *p);
		else
			appendStringInfo(&buf, "%%%02X", *p);
	}
	return buf.data;
}

/* Appends a JSON number, or null when not finite. */
void
ma_append_json_double(StringInfo buf, double v)
{
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(v) || isinf(v))
	{
		appendStringInfoString(buf, "null");
		return;
	}
	double_to_shortest_decimal_buf(v, num);
	appendStringInfoString(buf, num);
}

/* ---------- small JSON reads ---------- */

/* Finds "key" followed by ':' at any depth; returns the value start or NULL. */
static const char *
json_find_value(const char *json, const char *key)
{
	char	   *pat = psprintf("\"%s\"", key);
	const char *p = json;

	while ((p = strstr(p, pat)) != NULL)
	{
		const char *q = p + strlen(pat);

		while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
			q++;
		if (*q == ':')
		{
			q++;
			while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
				q++;
			return q;
		}
		p = q;
	}
	return NULL;
}

/*
 * The string value of a key in a small JSON object, or NULL; handles the
 * escapes Slack uses (\/ \" \\). */
char *
ma_json_string_field(const char *json, const char *key)
{
	const char *v = json ? json_find_value(json, key) : NULL;
	StringInfoData buf;

	if (v == NULL || *v != '"')
		return NULL;
	initStringInfo(&buf);
	for (v++; *v && *v != '"'; v++)
	{
		if (*v == '\\' && v[1] != '\0')
			v++;
		appendStringInfoChar(&buf, *v);
	}
	return *v == '"' ? buf.data : NULL;
}

/*
 * One credential of a channel whose secret holds several, as a JSON object
 * of strings (e.g. {"user": "...", "password": "..."}), or NULL when the
 * secret is not an object or lacks the key.  The write-time check refuses
 * \u escapes in such secrets, which this small reader does not decode.
 */
char *
ma_secret_field(const MaChannel *ch, const char *key)
{
	const char *p = ch->secret;

	if (p == NULL)
		return NULL;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '{')
		return NULL;
	return ma_json_string_field(p, key);
}

/*
 * The strings of key, which may be one string or an array of strings, as a
 * List of char *; NIL when absent or of another type.  Strings with escapes
 * are not expected (the write-time checks refuse them where this is used).
 */
List *
ma_json_string_list(const char *json, const char *key)
{
	const char *v = json ? json_find_value(json, key) : NULL;
	List	   *out = NIL;

	if (v == NULL)
		return NIL;
	if (*v == '"')
	{
		char	   *one = ma_json_string_field(json, key);

		return one ? list_make1(one) : NIL;
	}
	if (*v != '[')
		return NIL;
	for (v++;;)
	{
		const char *end;

		while (*v == ' ' || *v == ',' || *v == '\t' || *v == '\r' || *v == '\n')
			v++;
		if (*v != '"')
			break;
		end = strchr(v + 1, '"');
		if (end == NULL)
			break;
		out = lappend(out, pnstrdup(v + 1, end - v - 1));
		v = end + 1;
	}
	return out;
}

/* Integer value of key, when present. */
bool
ma_json_int_field(const char *json, const char *key, long *out)
{
	const char *v = json ? json_find_value(json, key) : NULL;
	char	   *end;

	if (v == NULL)
		return false;
	*out = strtol(v, &end, 10);
	return end != v;
}

