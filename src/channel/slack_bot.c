/*
 * slack_bot.c
 *		Slack Web API with a bot token (url is the API base, secret the
 *		xoxb- token, options.channel the conversation):
 *		- without a chart, one chat.postMessage;
 *		- with one, three steps: files.getUploadURLExternal (answers
 *		  upload_url and file_id), the PNG bytes to upload_url (answers plain
 *		  text), files.completeUploadExternal sharing the file with the
 *		  message.
 * The first answer's file_id and upload_url are kept as the delivery's
 * state ("<file_id> <upload_url>"), so a retry after an accepted upload
 * only completes it instead of uploading a second file.  Web API answers
 * are judged by their "ok"; chat.postMessage allows one message a second
 * per channel, hence 60 requests a minute.
 */
#include "postgres.h"

#include "utils/json.h"

#include "channel_kind.h"

/* The Web API method URL under the channel's base URL. */
static char *
method_url(const MaChannel *ch, const char *method)
{
	size_t		len = strlen(ch->url);

	if (len > 0 && ch->url[len - 1] == '/')
		return psprintf("%s%s", ch->url, method);
	return psprintf("%s/%s", ch->url, method);
}

/* A Web API call authenticated with the bot token. */
static MaHttpRequest *
api_request(const MaChannel *ch, const MaAlertMessage *msg,
			const char *method, const char *content_type)
{
	MaHttpRequest *req = ma_channel_request(method_url(ch, method), content_type, msg);

	ma_http_add_header(req, "Authorization",
					   psprintf("Bearer %s", ch->secret ? ch->secret : ""));
	return req;
}

/* options.channel, or "" (Slack then answers channel_not_found). */
static char *
conversation(const MaChannel *ch)
{
	char	   *c = ma_json_string_field(ch->options, "channel");

	return c ? c : "";
}

/* Without a chart: chat.postMessage. */
static MaHttpRequest *
post_message(const MaChannel *ch, const MaAlertMessage *msg)
{
	MaHttpRequest *req = api_request(ch, msg, "chat.postMessage",
									 "application/json; charset=utf-8");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"channel\":");
	escape_json(&buf, conversation(ch));
	appendStringInfoString(&buf, ",\"text\":");
	escape_json(&buf, ma_channel_text(msg, MA_TEXT_SLACK, "*", "*", "> "));
	appendStringInfoChar(&buf, '}');
	ma_channel_set_body(req, &buf);
	return req;
}

/* Step 1 of the upload: ask for an upload URL for png_len bytes. */
static MaHttpRequest *
upload_url_request(const MaChannel *ch, const MaAlertMessage *msg)
{
	MaHttpRequest *req = api_request(ch, msg, "files.getUploadURLExternal",
									 "application/x-www-form-urlencoded");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "filename=%s&length=%zu&alt_txt=%s",
					 ma_url_encode(psprintf("%s.png", msg->metric)), msg->png_len,
					 ma_url_encode(psprintf("Chart of %s", msg->metric)));
	ma_channel_set_body(req, &buf);
	return req;
}

/* Step 2: the PNG bytes to the upload URL Slack returned. */
static MaHttpRequest *
upload_request(const MaAlertMessage *msg, const char *upload_url)
{
	MaHttpRequest *req = ma_channel_request(upload_url, "image/png", msg);

	req->body = palloc(msg->png_len);
	memcpy(req->body, msg->png, msg->png_len);
	req->body_len = msg->png_len;
	return req;
}

/* Step 3: share the uploaded file in the channel with the alert text. */
static MaHttpRequest *
complete_request(const MaChannel *ch, const MaAlertMessage *msg, const char *file_id)
{
	MaHttpRequest *req = api_request(ch, msg, "files.completeUploadExternal",
									 "application/json; charset=utf-8");
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"files\":[{\"id\":");
	escape_json(&buf, file_id);
	appendStringInfoString(&buf, ",\"title\":");
	escape_json(&buf, ma_channel_title(msg, MA_TEXT_SLACK));
	appendStringInfoString(&buf, "}],\"channel_id\":");
	escape_json(&buf, conversation(ch));
	appendStringInfoString(&buf, ",\"initial_comment\":");
	escape_json(&buf, ma_channel_text(msg, MA_TEXT_SLACK, "*", "*", "> "));
	appendStringInfoChar(&buf, '}');
	ma_channel_set_body(req, &buf);
	return req;
}

static MaHttpRequest *
slack_bot_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
			   const char *state, int64 now_ms)
{
	const char *space = state ? strchr(state, ' ') : NULL;

	if (msg->png == NULL)
		return step == 0 ? post_message(ch, msg) : NULL;
	if (step == 0)
		return upload_url_request(ch, msg);
	if (step > 2)
		return NULL;
	/* steps 2 and 3 need the first answer; a lost state starts over */
	if (space == NULL)
		elog(ERROR, "slack upload state missing for step %d", step + 1);
	if (step == 1)
		return upload_request(msg, space + 1);
	return complete_request(ch, msg, pnstrdup(state, space - state));
}

/*
 * Web API answers say "ok":true; the upload URL answers plain text, so any
 * 2xx is its acceptance.  The first step's answer becomes the state.
 */
static bool
slack_bot_accepted(const MaChannel *ch, const MaAlertMessage *msg, int step, const MaHttpResponse *resp,
				   char **state, char **err)
{
	char	   *upload_url;
	char	   *file_id;

	if (step == 1)
		return true;
	if (resp->body == NULL || strstr(resp->body, "\"ok\":true") == NULL)
	{
		char	   *e = ma_json_string_field(resp->body, "error");

		*err = psprintf("slack error %s", e ? e : "(no ok in answer)");
		return false;
	}
	if (step != 0 || msg->png == NULL)
		return true;			/* chat.postMessage or the completion */
	upload_url = ma_json_string_field(resp->body, "upload_url");
	file_id = ma_json_string_field(resp->body, "file_id");
	if (upload_url == NULL || file_id == NULL || strchr(file_id, ' ') != NULL)
	{
		*err = pstrdup("slack answer without upload_url or file_id");
		return false;
	}
	*state = psprintf("%s %s", file_id, upload_url);
	return true;
}

const MaChannelKind ma_kind_slack_bot = {
	.name = "slack_bot",
	.carries_images = true,
	.rate_per_minute = 60,
	.next_request = slack_bot_next,
	.accepted = slack_bot_accepted,
};
