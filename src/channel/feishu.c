/*
 * feishu.c
 *		Feishu (飞书) custom bot: one text message, signed when the channel
 *		has a secret with timestamp (seconds) and
 *		sign = base64(HMAC-SHA256(key = timestamp "\n" secret, message = "")).
 *		A non-zero code (or StatusCode) in a 200 answer is a failure.  The
 *		platform allows 100 messages a minute per bot.
 */
#include "postgres.h"

#include "utils/json.h"

#include "channel_kind.h"

/* The documented signature: the key is the string to sign, the message is empty. */
static char *
feishu_sign(const char *secret, int64 ts_s)
{
	char	   *key = psprintf(INT64_FORMAT "\n%s", ts_s, secret);
	uint8		mac[MA_SHA256_LEN];

	ma_hmac_sha256(key, strlen(key), "", 0, mac);
	return ma_base64((const char *) mac, MA_SHA256_LEN);
}

static MaHttpRequest *
feishu_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
			const char *state, int64 now_ms)
{
	MaHttpRequest *req;
	StringInfoData buf;

	if (step > 0)
		return NULL;
	req = ma_channel_request(ch->url, "application/json", msg);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (ch->secret != NULL)
	{
		int64		ts = now_ms / 1000;

		appendStringInfo(&buf, "\"timestamp\":\"" INT64_FORMAT "\",\"sign\":", ts);
		escape_json(&buf, feishu_sign(ch->secret, ts));
		appendStringInfoChar(&buf, ',');
	}
	appendStringInfoString(&buf, "\"msg_type\":\"text\",\"content\":{\"text\":");
	escape_json(&buf, ma_channel_text(msg, MA_TEXT_FEISHU, "", "", ""));
	appendStringInfoString(&buf, "}}");
	ma_channel_set_body(req, &buf);
	return req;
}

static bool
feishu_accepted(const MaChannel *ch, const MaAlertMessage *msg, int step, const MaHttpResponse *resp,
				char **state, char **err)
{
	long		code;

	if ((ma_json_int_field(resp->body, "code", &code) ||
		 ma_json_int_field(resp->body, "StatusCode", &code)) && code != 0)
	{
		*err = psprintf("platform error code %ld", code);
		return false;
	}
	return true;
}

const MaChannelKind ma_kind_feishu = {
	.name = "feishu",
	.carries_images = false,
	.rate_per_minute = 100,
	.next_request = feishu_next,
	.accepted = feishu_accepted,
};
