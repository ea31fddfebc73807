/*
 * channel.c
 *		Builds the HTTP requests that deliver an alert to each kind of
 *		channel, with each platform's signature, and judges their answers.
 *
 * Kinds and what they send (see the README for the bodies):
 *	webhook    JSON body documented in the README; the chart as base64 PNG
 *			   when options.chart; X-Metric-Anomaly-Signature when a secret
 *			   is set.
 *	slack      Slack incoming webhook: text plus one mrkdwn section block.
 *	slack_bot  Slack Web API with a bot token: chat.postMessage, or with a
 *			   chart files.getUploadURLExternal, the upload, then
 *			   files.completeUploadExternal sharing it with the message.
 *	wecom      WeCom group robot: markdown, then the chart as an image
 *			   message (base64 and md5 of the PNG).
 *	feishu     Feishu custom bot: text message with timestamp and sign =
 *			   base64(HMAC-SHA256(key = timestamp "\n" secret, message = "")).
 *	dingtalk   DingTalk custom robot: markdown; the URL gains &timestamp=&sign=
 *			   with sign = urlencode(base64(HMAC-SHA256(key = secret,
 *			   message = timestamp_ms "\n" secret))).
 * Every request carries the Idempotency-Key header.  No SPI, no network.
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "common/shortest_dec.h"
#if PG_VERSION_NUM >= 140000
#include "common/cryptohash.h"
#include "common/hmac.h"
#else
#include "common/md5.h"
#include "common/sha2.h"
#endif
#include "lib/stringinfo.h"
#include "utils/json.h"

#include "channel.h"
#include "pg_compat.h"

#define SHA256_LEN 32
#define SHA256_BLOCK 64

static const struct
{
	const char *name;
	MaChannelKind kind;
}			kind_names[] =
{
	{"webhook", MA_CHANNEL_WEBHOOK},
	{"slack", MA_CHANNEL_SLACK},
	{"slack_bot", MA_CHANNEL_SLACK_BOT},
	{"wecom", MA_CHANNEL_WECOM},
	{"feishu", MA_CHANNEL_FEISHU},
	{"dingtalk", MA_CHANNEL_DINGTALK},
};

/* Maps a kind name of alert_channels.kind to the enum. */
bool
ma_channel_kind_from_name(const char *name, MaChannelKind *kind)
{
	for (int i = 0; i < lengthof(kind_names); i++)
	{
		if (strcmp(name, kind_names[i].name) == 0)
		{
			*kind = kind_names[i].kind;
			return true;
		}
	}
	return false;
}

/* Does this channel send the chart (kind able to and options.chart)? */
bool
ma_channel_carries_images(const MaChannel *ch)
{
	if (!ch->chart)
		return false;
	return ch->kind == MA_CHANNEL_WEBHOOK ||
		ch->kind == MA_CHANNEL_SLACK_BOT ||
		ch->kind == MA_CHANNEL_WECOM;
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

#if PG_VERSION_NUM < 140000
/* SHA-256 of a followed by b (PostgreSQL 13 has no HMAC API). */
static void
sha256(const uint8 *a, size_t alen, const uint8 *b, size_t blen, uint8 *out)
{
	pg_sha256_ctx ctx;

	pg_sha256_init(&ctx);
	pg_sha256_update(&ctx, a, alen);
	pg_sha256_update(&ctx, b, blen);
	pg_sha256_final(&ctx, out);
}
#endif

/* HMAC-SHA256 of msg with key into out (32 bytes). */
void
ma_hmac_sha256(const char *key, size_t keylen, const char *msg, size_t msglen,
			   uint8 *out)
{
#if PG_VERSION_NUM >= 140000
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);

	if (ctx == NULL)
		elog(ERROR, "out of memory computing HMAC");
	if (pg_hmac_init(ctx, (const uint8 *) key, keylen) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) msg, msglen) < 0 ||
		pg_hmac_final(ctx, out, SHA256_LEN) < 0)
	{
		pg_hmac_free(ctx);
		elog(ERROR, "could not compute HMAC-SHA256");
	}
	pg_hmac_free(ctx);
#else
	uint8		k[SHA256_BLOCK];
	uint8		pad[SHA256_BLOCK];
	uint8		inner[SHA256_LEN];

	memset(k, 0, sizeof(k));
	if (keylen > SHA256_BLOCK)
		sha256((const uint8 *) key, keylen, NULL, 0, k);
	else
		memcpy(k, key, keylen);
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	sha256(pad, SHA256_BLOCK, (const uint8 *) msg, msglen, inner);
	for (int i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	sha256(pad, SHA256_BLOCK, inner, SHA256_LEN, out);
#endif
}

/* Lower-case hex MD5 of data. */
char *
ma_md5_hex(const char *data, size_t len)
{
	uint8		sum[16];
	char	   *hex = palloc(33);

#if PG_VERSION_NUM >= 140000
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_MD5);

	if (ctx == NULL)
		elog(ERROR, "out of memory computing MD5");
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, sum, sizeof(sum)) < 0)
	{
		pg_cryptohash_free(ctx);
		elog(ERROR, "could not compute MD5");
	}
	pg_cryptohash_free(ctx);
#else
	if (!pg_md5_binary(data, len, sum))
		elog(ERROR, "could not compute MD5");
#endif
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", sum[i]);
	return hex;
}

/* Lower-case hex of len bytes. */
static char *
hex_of(const uint8 *b, size_t len)
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

/* Feishu: base64(HMAC-SHA256(key = ts "\n" secret, message = "")). */
char *
ma_feishu_sign(const char *secret, int64 ts_s)
{
	char	   *key = psprintf(INT64_FORMAT "\n%s", ts_s, secret);
	uint8		mac[SHA256_LEN];

	ma_hmac_sha256(key, strlen(key), "", 0, mac);
	return ma_base64((const char *) mac, SHA256_LEN);
}

/* DingTalk: urlencode(base64(HMAC-SHA256(key = secret, msg = ts "\n" secret))). */
char *
ma_dingtalk_sign(const char *secret, int64 ts_ms)
{
	char	   *msg = psprintf(INT64_FORMAT "\n%s", ts_ms, secret);
	uint8		mac[SHA256_LEN];

	ma_hmac_sha256(secret, strlen(secret), msg, strlen(msg), mac);
	return ma_url_encode(ma_base64((const char *) mac, SHA256_LEN));
}

/* Appends a JSON number, or null when not finite. */
static void
append_json_double(StringInfo buf, double v)
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

/* A value as its shortest exact decimal text. */
static char *
format_value(double v)
{
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v, num);
	return pstrdup(num);
}

/* "[FIRING] signup", "[RESOLVED] signup" or "[TEST] signup". */
static char *
message_title(const MaAlertMessage *msg)
{
	const char *tag = msg->test ? "TEST" :
		(strcmp(msg->state, "firing") == 0 ? "FIRING" : "RESOLVED");

	return psprintf("[%s] %s", tag, msg->metric);
}

/* Plain-text lines shared by the chat kinds. */
static char *
message_text(const MaAlertMessage *msg, const char *bold_open,
			 const char *bold_close, const char *quote)
{
	return psprintf("%s%s%s\n%s%s\n%sminute: %s UTC, value: %s, source: %s",
					bold_open, message_title(msg), bold_close,
					quote, msg->summary,
					quote, msg->minute, format_value(msg->value), msg->source);
}

/* Headers every request carries. */
static void
add_common_headers(MaHttpRequest *req, const MaAlertMessage *msg)
{
	ma_http_add_header(req, "Idempotency-Key", msg->idempotency_key);
}

/* Makes buf the body of req. */
static void
set_body(MaHttpRequest *req, StringInfo buf)
{
	req->body = buf->data;
	req->body_len = buf->len;
}

/* ---------- kinds ---------- */

/* Generic webhook: the documented JSON body. */
static MaHttpRequest *
build_webhook(const MaChannel *ch, const MaAlertMessage *msg,
			  const char *png, size_t png_len)
{
	MaHttpRequest *req = ma_http_request_new(ch->url, "application/json");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"alert_id\":" INT64_FORMAT ",\"metric\":", msg->alert_id);
	escape_json(&buf, msg->metric);
	appendStringInfoString(&buf, ",\"minute\":");
	escape_json(&buf, msg->minute);
	appendStringInfoString(&buf, ",\"value\":");
	append_json_double(&buf, msg->value);
	appendStringInfoString(&buf, ",\"state\":");
	escape_json(&buf, msg->state);
	appendStringInfoString(&buf, ",\"source\":");
	escape_json(&buf, msg->source);
	appendStringInfoString(&buf, ",\"episode_start\":");
	escape_json(&buf, msg->episode_start);
	appendStringInfoString(&buf, ",\"summary\":");
	escape_json(&buf, msg->summary);
	appendStringInfo(&buf, ",\"context\":%s", msg->context ? msg->context : "null");
	appendStringInfo(&buf, ",\"test\":%s", msg->test ? "true" : "false");
	appendStringInfoString(&buf, ",\"idempotency_key\":");
	escape_json(&buf, msg->idempotency_key);
	if (png != NULL && ma_channel_carries_images(ch))
	{
		appendStringInfoString(&buf, ",\"chart_png_base64\":\"");
		appendStringInfoString(&buf, ma_base64(png, png_len));
		appendStringInfoChar(&buf, '"');
	}
	appendStringInfoChar(&buf, '}');
	set_body(req, &buf);
	add_common_headers(req, msg);
	if (ch->secret != NULL)
	{
		uint8		mac[SHA256_LEN];

		ma_hmac_sha256(ch->secret, strlen(ch->secret), buf.data, buf.len, mac);
		ma_http_add_header(req, "X-Metric-Anomaly-Signature",
						   psprintf("sha256=%s", hex_of(mac, SHA256_LEN)));
	}
	return req;
}

/* Slack incoming webhook: text (fallback) plus one mrkdwn section. */
static MaHttpRequest *
build_slack(const MaChannel *ch, const MaAlertMessage *msg)
{
	MaHttpRequest *req = ma_http_request_new(ch->url, "application/json");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"text\":");
	escape_json(&buf, message_text(msg, "", "", ""));
	appendStringInfoString(&buf, ",\"blocks\":[{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":");
	escape_json(&buf, message_text(msg, "*", "*", "> "));
	appendStringInfoString(&buf, "}}]}");
	set_body(req, &buf);
	add_common_headers(req, msg);
	return req;
}

/* The Web API method URL under the channel's base URL. */
static char *
slack_method_url(const MaChannel *ch, const char *method)
{
	size_t		len = strlen(ch->url);

	if (len > 0 && ch->url[len - 1] == '/')
		return psprintf("%s%s", ch->url, method);
	return psprintf("%s/%s", ch->url, method);
}

/* A Slack Web API call authenticated with the bot token. */
static MaHttpRequest *
slack_api_request(const MaChannel *ch, const MaAlertMessage *msg,
				  const char *method, const char *content_type)
{
	MaHttpRequest *req = ma_http_request_new(slack_method_url(ch, method), content_type);

	ma_http_add_header(req, "Authorization", psprintf("Bearer %s", ch->secret ? ch->secret : ""));
	add_common_headers(req, msg);
	return req;
}

/* Slack bot without chart: chat.postMessage. */
static MaHttpRequest *
build_slack_post_message(const MaChannel *ch, const MaAlertMessage *msg)
{
	MaHttpRequest *req = slack_api_request(ch, msg, "chat.postMessage",
										   "application/json; charset=utf-8");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"channel\":");
	escape_json(&buf, ch->slack_channel ? ch->slack_channel : "");
	appendStringInfoString(&buf, ",\"text\":");
	escape_json(&buf, message_text(msg, "*", "*", "> "));
	appendStringInfoChar(&buf, '}');
	set_body(req, &buf);
	return req;
}

/* Step 1 of the upload flow: ask for an upload URL for a PNG of png_len bytes. */
MaHttpRequest *
ma_slack_upload_url_request(const MaChannel *ch, const MaAlertMessage *msg, size_t png_len)
{
	MaHttpRequest *req = slack_api_request(ch, msg, "files.getUploadURLExternal",
										   "application/x-www-form-urlencoded");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "filename=%s&length=%zu&alt_txt=%s",
					 ma_url_encode(psprintf("%s.png", msg->metric)), png_len,
					 ma_url_encode(psprintf("Chart of %s", msg->metric)));
	set_body(req, &buf);
	return req;
}

/* Step 2: the PNG bytes to the upload URL Slack returned. */
MaHttpRequest *
ma_slack_upload_request(const MaChannel *ch, const MaAlertMessage *msg,
						const char *upload_url, const char *png, size_t png_len)
{
	MaHttpRequest *req = ma_http_request_new(upload_url, "image/png");

	req->body = palloc(png_len);
	memcpy(req->body, png, png_len);
	req->body_len = png_len;
	add_common_headers(req, msg);
	return req;
}

/* Step 3: share the uploaded file in the channel with the alert text. */
MaHttpRequest *
ma_slack_complete_request(const MaChannel *ch, const MaAlertMessage *msg, const char *file_id)
{
	MaHttpRequest *req = slack_api_request(ch, msg, "files.completeUploadExternal",
										   "application/json; charset=utf-8");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"files\":[{\"id\":");
	escape_json(&buf, file_id);
	appendStringInfoString(&buf, ",\"title\":");
	escape_json(&buf, message_title(msg));
	appendStringInfoString(&buf, "}],\"channel_id\":");
	escape_json(&buf, ch->slack_channel ? ch->slack_channel : "");
	appendStringInfoString(&buf, ",\"initial_comment\":");
	escape_json(&buf, message_text(msg, "*", "*", "> "));
	appendStringInfoChar(&buf, '}');
	set_body(req, &buf);
	return req;
}

/* WeCom: markdown, then the chart as an image message. */
static List *
build_wecom(const MaChannel *ch, const MaAlertMessage *msg, const char *png, size_t png_len)
{
	MaHttpRequest *req = ma_http_request_new(ch->url, "application/json");
	StringInfoData buf;
	List	   *reqs;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"msgtype\":\"markdown\",\"markdown\":{\"content\":");
	escape_json(&buf, message_text(msg, "**", "**", "> "));
	appendStringInfoString(&buf, "}}");
	set_body(req, &buf);
	add_common_headers(req, msg);
	reqs = list_make1(req);

	if (png != NULL && ma_channel_carries_images(ch))
	{
		req = ma_http_request_new(ch->url, "application/json");
		initStringInfo(&buf);
		appendStringInfo(&buf,
						 "{\"msgtype\":\"image\",\"image\":{\"base64\":\"%s\",\"md5\":\"%s\"}}",
						 ma_base64(png, png_len), ma_md5_hex(png, png_len));
		set_body(req, &buf);
		add_common_headers(req, msg);
		reqs = lappend(reqs, req);
	}
	return reqs;
}

/* Feishu: text message, signed when the channel has a secret. */
static MaHttpRequest *
build_feishu(const MaChannel *ch, const MaAlertMessage *msg, int64 now_ms)
{
	MaHttpRequest *req = ma_http_request_new(ch->url, "application/json");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (ch->secret != NULL)
	{
		int64		ts = now_ms / 1000;

		appendStringInfo(&buf, "\"timestamp\":\"" INT64_FORMAT "\",\"sign\":", ts);
		escape_json(&buf, ma_feishu_sign(ch->secret, ts));
		appendStringInfoChar(&buf, ',');
	}
	appendStringInfoString(&buf, "\"msg_type\":\"text\",\"content\":{\"text\":");
	escape_json(&buf, message_text(msg, "", "", ""));
	appendStringInfoString(&buf, "}}");
	set_body(req, &buf);
	add_common_headers(req, msg);
	return req;
}

/* DingTalk: markdown; the URL carries timestamp and sign with a secret. */
static MaHttpRequest *
build_dingtalk(const MaChannel *ch, const MaAlertMessage *msg, int64 now_ms)
{
	char	   *url = ch->url;
	MaHttpRequest *req;
	StringInfoData buf;

	if (ch->secret != NULL)
		url = psprintf("%s%ctimestamp=" INT64_FORMAT "&sign=%s", ch->url,
					   strchr(ch->url, '?') ? '&' : '?', now_ms,
					   ma_dingtalk_sign(ch->secret, now_ms));
	req = ma_http_request_new(url, "application/json");
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"msgtype\":\"markdown\",\"markdown\":{\"title\":");
	escape_json(&buf, message_title(msg));
	appendStringInfoString(&buf, ",\"text\":");
	escape_json(&buf, message_text(msg, "### ", "", "> "));
	appendStringInfoString(&buf, "}}");
	set_body(req, &buf);
	add_common_headers(req, msg);
	return req;
}

/*
 * The requests of one delivery, in order (see channel.h).  For slack_bot with
 * a chart only the first step is returned; the caller drives the rest.
 */
List *
ma_channel_build(const MaChannel *ch, const MaAlertMessage *msg,
				 const char *png, size_t png_len, int64 now_ms)
{
	switch (ch->kind)
	{
		case MA_CHANNEL_WEBHOOK:
			return list_make1(build_webhook(ch, msg, png, png_len));
		case MA_CHANNEL_SLACK:
			return list_make1(build_slack(ch, msg));
		case MA_CHANNEL_SLACK_BOT:
			if (png != NULL && ma_channel_carries_images(ch))
				return list_make1(ma_slack_upload_url_request(ch, msg, png_len));
			return list_make1(build_slack_post_message(ch, msg));
		case MA_CHANNEL_WECOM:
			return build_wecom(ch, msg, png, png_len);
		case MA_CHANNEL_FEISHU:
			return list_make1(build_feishu(ch, msg, now_ms));
		case MA_CHANNEL_DINGTALK:
			return list_make1(build_dingtalk(ch, msg, now_ms));
	}
	elog(ERROR, "unknown channel kind %d", (int) ch->kind);
	return NIL;					/* keep compiler quiet */
}

/* ---------- answers ---------- */

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

/* See channel.h; handles the escapes Slack uses (\/ \" \\). */
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

/* Integer value of key, when present. */
static bool
json_int_field(const char *json, const char *key, long *out)
{
	const char *v = json ? json_find_value(json, key) : NULL;
	char	   *end;

	if (v == NULL)
		return false;
	*out = strtol(v, &end, 10);
	return end != v;
}

/* See channel.h. */
bool
ma_channel_response_ok(const MaChannel *ch, const MaHttpResponse *resp, char **err)
{
	long		code;

	*err = NULL;
	if (resp->status < 200 || resp->status > 299)
	{
		*err = psprintf("HTTP status %ld", resp->status);
		return false;
	}
	switch (ch->kind)
	{
		case MA_CHANNEL_WECOM:
		case MA_CHANNEL_DINGTALK:
			if (json_int_field(resp->body, "errcode", &code) && code != 0)
			{
				*err = psprintf("platform error code %ld", code);
				return false;
			}
			break;
		case MA_CHANNEL_FEISHU:
			if ((json_int_field(resp->body, "code", &code) ||
				 json_int_field(resp->body, "StatusCode", &code)) && code != 0)
			{
				*err = psprintf("platform error code %ld", code);
				return false;
			}
			break;
		case MA_CHANNEL_SLACK_BOT:
			if (resp->body == NULL || strstr(resp->body, "\"ok\":true") == NULL)
			{
				char	   *e = ma_json_string_field(resp->body, "error");

				*err = psprintf("slack error %s", e ? e : "(no ok in answer)");
				return false;
			}
			break;
		default:
			break;
	}
	return true;
}
