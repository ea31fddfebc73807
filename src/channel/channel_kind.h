/*
 * channel_kind.h
 *		What a channel kind provides, and the building blocks kinds share.
 *
 * A kind is one file in src/channel/ defining one MaChannelKind, listed in
 * the table of src/channel.c and in the CHECK of alert_channels.kind.  It
 * turns an alert into requests one step at a time: next_request() gets the
 * number of steps already accepted and the state earlier answers left, and
 * returns the next request or NULL when the delivery is complete;
 * accepted() is asked only about 2xx answers (for SMTP, a submission the
 * server took), says whether the platform accepted them, and may leave
 * state for later steps.  The kind's transport (HTTP unless it says SMTP)
 * is the only kind of request it builds and decides the schemes its
 * channels' url may use.  A kind that carries images only when a channel
 * is configured for it (Feishu with an app) says so in images_configured(),
 * so that no chart is rendered for the others.  Every text a kind
 * builds from metric names, rule names or summaries goes through
 * ma_channel_text() with the kind's format, so that a name can mention
 * nobody and link nowhere.  No SPI, no network.
 */
#ifndef MA_CHANNEL_KIND_H
#define MA_CHANNEL_KIND_H

#include "postgres.h"

#include "lib/stringinfo.h"

#include "channel.h"

/* How text is escaped for a target (see ma_channel_escape). */
typedef enum MaTextFormat
{
	MA_TEXT_JSON,				/* data: JSON string escaping only */
	MA_TEXT_SLACK,				/* Slack mrkdwn */
	MA_TEXT_MARKDOWN,			/* WeCom and DingTalk markdown */
	MA_TEXT_FEISHU,				/* Feishu text messages (<at> tags) */
	MA_TEXT_HTML,				/* e-mail HTML: entities */
	MA_TEXT_PLAIN				/* e-mail text: no markup, nothing linked */
} MaTextFormat;

struct MaChannelKind
{
	const char *name;			/* alert_channels.kind */
	MaTransport transport;		/* HTTP (the default) or SMTP: url's schemes */
	bool		carries_images; /* sends the chart when options.chart */
	/* NULL, or whether this channel is configured to send images */
	bool		(*images_configured) (const MaChannel *ch);
	int			rate_per_minute;	/* the platform's documented limit; 0 none */
	MaHttpRequest *(*next_request) (const MaChannel *ch, const MaAlertMessage *msg,
									int step, const char *state, int64 now_ms);
	bool		(*accepted) (const MaChannel *ch, const MaAlertMessage *msg, int step, const MaHttpResponse *resp,
							 char **state, char **err);
};

/* The members (src/channel/<name>.c). */
extern const MaChannelKind ma_kind_webhook;
extern const MaChannelKind ma_kind_slack;
extern const MaChannelKind ma_kind_slack_bot;
extern const MaChannelKind ma_kind_wecom;
extern const MaChannelKind ma_kind_feishu;
extern const MaChannelKind ma_kind_dingtalk;
extern const MaChannelKind ma_kind_email;

/* Text of an alert, escaped for the format. */
extern char *ma_channel_escape(const char *s, MaTextFormat fmt);
extern char *ma_channel_title(const MaAlertMessage *msg, MaTextFormat fmt);
extern char *ma_channel_text(const MaAlertMessage *msg, MaTextFormat fmt,
							 const char *bold_open, const char *bold_close,
							 const char *quote);

/* Requests. */
extern MaHttpRequest *ma_channel_request(const char *url, const char *content_type,
										 const MaAlertMessage *msg);
extern void ma_channel_set_body(MaHttpRequest *req, StringInfo buf);
extern bool ma_channel_accept_any(const MaChannel *ch, const MaAlertMessage *msg, int step, const MaHttpResponse *resp,
								  char **state, char **err);

/* Answers and options. */
extern char *ma_json_string_field(const char *json, const char *key);
extern char *ma_secret_field(const MaChannel *ch, const char *key);
extern List *ma_json_string_list(const char *json, const char *key);
extern bool ma_json_int_field(const char *json, const char *key, long *out);

/* Encodings and signatures. */
extern char *ma_base64(const char *data, size_t len);
extern void ma_append_base64_lines(StringInfo buf, const char *data, size_t len);
extern void ma_hmac_sha256(const char *key, size_t keylen,
						   const char *msg, size_t msglen, uint8 *out);
extern char *ma_md5_hex(const char *data, size_t len);
extern char *ma_hex(const uint8 *b, size_t len);
extern char *ma_url_encode(const char *s);
extern void ma_append_json_double(StringInfo buf, double v);

#define MA_SHA256_LEN 32

#endif							/* MA_CHANNEL_KIND_H */
