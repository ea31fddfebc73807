/*
 * dingtalk.c
 *		DingTalk (钉钉) custom robot: one markdown message; with a secret the
 *		URL gains &timestamp=<ms>&sign= urlencode(base64(HMAC-SHA256(key =
 *		secret, message = timestamp "\n" secret))).  errcode != 0 in a 200
 *		answer is a failure.  The platform allows 20 messages a minute per
 *		robot and mutes a robot that sends more for ten minutes.
 */
#include "postgres.h"

#include "utils/json.h"

#include "channel_kind.h"

static char *
dingtalk_sign(const char *secret, int64 ts_ms)
{
	char	   *msg = psprintf(INT64_FORMAT "\n%s", ts_ms, secret);
	uint8		mac[MA_SHA256_LEN];

	ma_hmac_sha256(secret, strlen(secret), msg, strlen(msg), mac);
	return ma_url_encode(ma_base64((const char *) mac, MA_SHA256_LEN));
}

static MaHttpRequest *
dingtalk_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
			  const char *state, int64 now_ms)
{
	char	   *url = ch->url;
	MaHttpRequest *req;
	StringInfoData buf;

	if (step > 0)
		return NULL;
	if (ch->secret != NULL)
		url = psprintf("%s%ctimestamp=" INT64_FORMAT "&sign=%s", ch->url,
					   strchr(ch->url, '?') ? '&' : '?', now_ms,
					   dingtalk_sign(ch->secret, now_ms));
	req = ma_channel_request(url, "application/json", msg);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"msgtype\":\"markdown\",\"markdown\":{\"title\":");
	escape_json(&buf, ma_channel_title(msg, MA_TEXT_MARKDOWN));
	appendStringInfoString(&buf, ",\"text\":");
	escape_json(&buf, ma_channel_text(msg, MA_TEXT_MARKDOWN, "### ", "", "> "));
	appendStringInfoString(&buf, "}}");
	ma_channel_set_body(req, &buf);
	return req;
}

static bool
dingtalk_accepted(const MaChannel *ch, const MaAlertMessage *msg, int step, const MaHttpResponse *resp,
				  char **state, char **err)
{
	long		code;

	if (ma_json_int_field(resp->body, "errcode", &code) && code != 0)
	{
		*err = psprintf("platform error code %ld", code);
		return false;
	}
	return true;
}

const MaChannelKind ma_kind_dingtalk = {
	.name = "dingtalk",
	.carries_images = false,
	.rate_per_minute = 20,
	.next_request = dingtalk_next,
	.accepted = dingtalk_accepted,
};
