/*
 * feishu.c
 *		Feishu (飞书) custom bot: a text message, signed when the channel has a
 *		signing secret with timestamp (seconds) and
 *		sign = base64(HMAC-SHA256(key = timestamp "\n" secret, message = "")).
 *		A non-zero code (or StatusCode) in a 200 answer is a failure.  The
 *		platform allows 100 messages a minute per bot.
 *
 * Custom bots cannot upload images; an app can.  When options.app_id is set
 * and the secret is {"app_secret": "...", "sign": "..."} (sign optional), the
 * chart follows the text in three more steps against options.api_base
 * (default https://open.feishu.cn):
 *	2. auth/v3/tenant_access_token/internal with the app id and secret
 *	   (answers tenant_access_token, valid two hours);
 *	3. im/v1/images, multipart image_type=message and the PNG, with the
 *	   token as bearer (answers data.image_key);
 *	4. the bot's webhook again, msg_type image with that image_key.
 * The token is the state after step 2 (kept with the delivery, which only
 * admins read, like the app secret itself), the image key after step 3, so
 * a retry resumes at the first step not accepted and never uploads twice
 * once an upload was accepted.  A retry of the upload more than two hours
 * after the token was issued fails until the delivery is dead; the default
 * backoff retries for about 40 minutes.
 */
#include "postgres.h"

#include "utils/json.h"

#include "channel_kind.h"

#define DEFAULT_API_BASE "https://open.feishu.cn"

/* The signing secret: the whole secret, or its "sign" when it is an object. */
static char *
signing_secret(const MaChannel *ch)
{
	if (ch->secret != NULL && ma_secret_field(ch, "app_secret") != NULL)
		return ma_secret_field(ch, "sign");
	return ch->secret;
}

/* Are an app id and secret configured, so that the chart can be sent? */
static bool
feishu_images_configured(const MaChannel *ch)
{
	return ma_json_string_field(ch->options, "app_id") != NULL &&
		ma_secret_field(ch, "app_secret") != NULL;
}

/* The documented signature: the key is the string to sign, the message is empty. */
static char *
feishu_sign(const char *secret, int64 ts_s)
{
	char	   *key = psprintf(INT64_FORMAT "\n%s", ts_s, secret);
	uint8		mac[MA_SHA256_LEN];

	ma_hmac_sha256(key, strlen(key), "", 0, mac);
	return ma_base64((const char *) mac, MA_SHA256_LEN);
}

/* A message to the bot's webhook: msg_type and its content, signed. */
static MaHttpRequest *
bot_message(const MaChannel *ch, const MaAlertMessage *msg, int64 now_ms,
			const char *msg_type, const char *content_key, const char *content)
{
	MaHttpRequest *req = ma_channel_request(ch->url, "application/json", msg);
	char	   *secret = signing_secret(ch);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (secret != NULL)
	{
		int64		ts = now_ms / 1000;

		appendStringInfo(&buf, "\"timestamp\":\"" INT64_FORMAT "\",\"sign\":", ts);
		escape_json(&buf, feishu_sign(secret, ts));
		appendStringInfoChar(&buf, ',');
	}
	appendStringInfoString(&buf, "\"msg_type\":");
	escape_json(&buf, msg_type);
	appendStringInfo(&buf, ",\"content\":{\"%s\":", content_key);
	escape_json(&buf, content);
	appendStringInfoString(&buf, "}}");
	ma_channel_set_body(req, &buf);
	return req;
}

/* An Open API URL under options.api_base. */
static char *
api_url(const MaChannel *ch, const char *path)
{
	char	   *base = ma_json_string_field(ch->options, "api_base");
	size_t		len;

	if (base == NULL)
		base = DEFAULT_API_BASE;
	len = strlen(base);
	return psprintf("%s%s%s", base, (len > 0 && base[len - 1] == '/') ? "" : "/", path);
}

/* Step 2: a tenant access token for the app. */
static MaHttpRequest *
token_request(const MaChannel *ch, const MaAlertMessage *msg)
{
	MaHttpRequest *req = ma_channel_request(api_url(ch, "open-apis/auth/v3/tenant_access_token/internal"),
											"application/json; charset=utf-8", msg);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"app_id\":");
	escape_json(&buf, ma_json_string_field(ch->options, "app_id"));
	appendStringInfoString(&buf, ",\"app_secret\":");
	escape_json(&buf, ma_secret_field(ch, "app_secret"));
	appendStringInfoChar(&buf, '}');
	ma_channel_set_body(req, &buf);
	return req;
}

/*
 * Step 3: the PNG as multipart/form-data (image_type=message, image), with
 * a boundary that does not occur in the PNG.
 */
static MaHttpRequest *
upload_request(const MaChannel *ch, const MaAlertMessage *msg, const char *token)
{
	char	   *boundary = psprintf("ma-feishu-%s",
									pnstrdup(ma_md5_hex(msg->idempotency_key,
														strlen(msg->idempotency_key)), 16));
	MaHttpRequest *req;
	StringInfoData buf;

	while (memmem(msg->png, msg->png_len, boundary, strlen(boundary)) != NULL)
		boundary = psprintf("%s-", boundary);
	req = ma_channel_request(api_url(ch, "open-apis/im/v1/images"),
							 psprintf("multipart/form-data; boundary=%s", boundary), msg);
	ma_http_add_header(req, "Authorization", psprintf("Bearer %s", token));
	initStringInfo(&buf);
	appendStringInfo(&buf, "--%s\r\nContent-Disposition: form-data; name=\"image_type\"\r\n\r\n"
					 "message\r\n", boundary);
	appendStringInfo(&buf, "--%s\r\nContent-Disposition: form-data; name=\"image\"; filename=\"chart.png\"\r\n"
					 "Content-Type: image/png\r\n\r\n", boundary);
	appendBinaryStringInfo(&buf, msg->png, (int) msg->png_len);
	appendStringInfo(&buf, "\r\n--%s--\r\n", boundary);
	ma_channel_set_body(req, &buf);
	return req;
}

static MaHttpRequest *
feishu_next(const MaChannel *ch, const MaAlertMessage *msg, int step,
			const char *state, int64 now_ms)
{
	if (step == 0)
		return bot_message(ch, msg, now_ms, "text", "text",
						   ma_channel_text(msg, MA_TEXT_FEISHU, "", "", ""));
	if (msg->png == NULL || step > 3)
		return NULL;
	if (step == 1)
		return token_request(ch, msg);
	/* steps 3 and 4 need what the previous one answered */
	if (state == NULL)
		elog(ERROR, "feishu image state missing for step %d", step + 1);
	if (step == 2)
		return upload_request(ch, msg, state);
	return bot_message(ch, msg, now_ms, "image", "image_key", state);
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
	if (step == 1 || step == 2)
	{
		const char *key = step == 1 ? "tenant_access_token" : "image_key";
		char	   *value = ma_json_string_field(resp->body, key);

		if (value == NULL || value[0] == '\0')
		{
			*err = psprintf("feishu answer without %s", key);
			return false;
		}
		*state = value;
	}
	return true;
}

const MaChannelKind ma_kind_feishu = {
	.name = "feishu",
	.carries_images = true,
	.images_configured = feishu_images_configured,
	.rate_per_minute = 100,
	.next_request = feishu_next,
	.accepted = feishu_accepted,
};
