/*
 * webhook.c
 *		Generic webhook: one POST of the JSON body the README documents, the
 *		chart as base64 PNG when options.chart, and
 *		X-Metric-Anomaly-Signature: sha256=<hex HMAC-SHA256(secret, body)>
 *		when the channel has a secret.  No rate limit: the endpoint is yours.
 */
#include "postgres.h"

#include "utils/json.h"

#include "channel_kind.h"

static void
append_field(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ",\"%s\":", key);
	escape_json(buf, value);
}

static MaHttpRequest *
webhook_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
			 const char *state, int64 now_ms)
{
	MaHttpRequest *req;
	StringInfoData buf;

	if (step > 0)
		return NULL;
	req = ma_channel_request(ch->url, "application/json", msg);
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"alert_id\":" INT64_FORMAT, msg->alert_id);
	append_field(&buf, "metric", msg->metric);
	append_field(&buf, "minute", msg->minute);
	appendStringInfoString(&buf, ",\"value\":");
	ma_append_json_double(&buf, msg->value);
	append_field(&buf, "state", msg->state);
	append_field(&buf, "source", msg->source);
	append_field(&buf, "episode_start", msg->episode_start);
	append_field(&buf, "summary", msg->summary);
	appendStringInfo(&buf, ",\"context\":%s", msg->context ? msg->context : "null");
	appendStringInfo(&buf, ",\"test\":%s", msg->test ? "true" : "false");
	append_field(&buf, "idempotency_key", msg->idempotency_key);
	if (msg->png != NULL)
		appendStringInfo(&buf, ",\"chart_png_base64\":\"%s\"",
						 ma_base64(msg->png, msg->png_len));
	appendStringInfoChar(&buf, '}');
	ma_channel_set_body(req, &buf);
	if (ch->secret != NULL)
	{
		uint8		mac[MA_SHA256_LEN];

		ma_hmac_sha256(ch->secret, strlen(ch->secret), buf.data, buf.len, mac);
		ma_http_add_header(req, "X-Metric-Anomaly-Signature",
						   psprintf("sha256=%s", ma_hex(mac, MA_SHA256_LEN)));
	}
	return req;
}

const MaChannelKind ma_kind_webhook = {
	.name = "webhook",
	.carries_images = true,
	.rate_per_minute = 0,
	.next_request = webhook_next,
	.accepted = ma_channel_accept_any,
};
