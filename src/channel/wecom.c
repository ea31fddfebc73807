/*
 * wecom.c
 *		WeCom (企业微信) group robot: a markdown message, then the chart as an
 *		image message (base64 and md5 of the PNG).  Each is one message of the
 *		documented 20 a minute per robot; errcode != 0 in a 200 answer is a
 *		failure.  A retry after an accepted markdown sends only the image.
 */
#include "postgres.h"

#include "utils/json.h"

#include "channel_kind.h"

static MaHttpRequest *
wecom_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
		   const char *state, int64 now_ms)
{
	MaHttpRequest *req;
	StringInfoData buf;

	if (step > 1 || (step == 1 && msg->png == NULL))
		return NULL;
	req = ma_channel_request(ch->url, "application/json", msg);
	initStringInfo(&buf);
	if (step == 0)
	{
		appendStringInfoString(&buf, "{\"msgtype\":\"markdown\",\"markdown\":{\"content\":");
		escape_json(&buf, ma_channel_text(msg, MA_TEXT_MARKDOWN, "**", "**", "> "));
		appendStringInfoString(&buf, "}}");
	}
	else
		appendStringInfo(&buf,
						 "{\"msgtype\":\"image\",\"image\":{\"base64\":\"%s\",\"md5\":\"%s\"}}",
						 ma_base64(msg->png, msg->png_len), ma_md5_hex(msg->png, msg->png_len));
	ma_channel_set_body(req, &buf);
	return req;
}

/* errcode 0, or none at all, is success. */
static bool
wecom_accepted(const MaChannel *ch, const MaAlertMessage *msg, int step, const MaHttpResponse *resp,
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

const MaChannelKind ma_kind_wecom = {
	.name = "wecom",
	.carries_images = true,
	.rate_per_minute = 20,
	.next_request = wecom_next,
	.accepted = wecom_accepted,
};
