/*
 * slack.c
 *		Slack incoming webhook: one POST with text (the notification
 *		fallback) and one mrkdwn section block, both escaped as Slack
 *		documents.  Slack allows one message per second per webhook (short
 *		bursts tolerated), hence 60 a minute.
 */
#include "postgres.h"

#include "utils/json.h"

#include "channel_kind.h"

static MaHttpRequest *
slack_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
		   const char *state, int64 now_ms)
{
	MaHttpRequest *req;
	StringInfoData buf;

	if (step > 0)
		return NULL;
	req = ma_channel_request(ch->url, "application/json", msg);
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"text\":");
	escape_json(&buf, ma_channel_text(msg, MA_TEXT_SLACK, "", "", ""));
	appendStringInfoString(&buf, ",\"blocks\":[{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":");
	escape_json(&buf, ma_channel_text(msg, MA_TEXT_SLACK, "*", "*", "> "));
	appendStringInfoString(&buf, "}}]}");
	ma_channel_set_body(req, &buf);
	return req;
}

const MaChannelKind ma_kind_slack = {
	.name = "slack",
	.carries_images = false,
	.rate_per_minute = 60,
	.next_request = slack_next,
	.accepted = ma_channel_accept_any,
};
