/*
 * channel.h
 *		Per-kind construction of the HTTP requests of an alert: URL, headers,
 *		body and signature for generic webhooks, Slack, WeCom, Feishu and
 *		DingTalk.  Pure code: no SPI, no network.
 */
#ifndef MA_CHANNEL_H
#define MA_CHANNEL_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "http.h"

typedef enum MaChannelKind
{
	MA_CHANNEL_WEBHOOK,
	MA_CHANNEL_SLACK,
	MA_CHANNEL_SLACK_BOT,
	MA_CHANNEL_WECOM,
	MA_CHANNEL_FEISHU,
	MA_CHANNEL_DINGTALK
} MaChannelKind;

typedef struct MaChannel
{
	char	   *name;
	MaChannelKind kind;
	char	   *url;			/* secret */
	char	   *secret;			/* secret, or NULL */
	bool		chart;			/* options.chart (default true) */
	char	   *slack_channel;	/* options.channel, slack_bot only */
} MaChannel;

/* An alert as channels render it; every string already formatted. */
typedef struct MaAlertMessage
{
	int64		alert_id;
	char	   *metric;
	char	   *minute;			/* ISO 8601 UTC, e.g. 2026-11-21T05:03:00Z */
	double		value;
	char	   *state;			/* firing, resolved */
	char	   *source;			/* 3-sigma, threshold:<rule> */
	char	   *episode_start;	/* ISO 8601 UTC */
	char	   *context;		/* JSON text, or NULL */
	char	   *summary;
	char	   *idempotency_key;
	bool		test;			/* sent by test_channel() */
} MaAlertMessage;

extern bool ma_channel_kind_from_name(const char *name, MaChannelKind *kind);
extern bool ma_channel_carries_images(const MaChannel *ch);

/*
 * The requests of one delivery, in order.  png may be NULL.  now_ms is the
 * wall clock in milliseconds since the Unix epoch (for signatures).
 * slack_bot with a chart is a three-step flow: see channel_slack_*.
 */
extern List *ma_channel_build(const MaChannel *ch, const MaAlertMessage *msg,
							  const char *png, size_t png_len, int64 now_ms);

/* Slack bot file upload flow (files.getUploadURLExternal and friends). */
extern MaHttpRequest *ma_slack_upload_url_request(const MaChannel *ch, const MaAlertMessage *msg,
												  size_t png_len);
extern MaHttpRequest *ma_slack_upload_request(const MaChannel *ch, const MaAlertMessage *msg,
											  const char *upload_url,
											  const char *png, size_t png_len);
extern MaHttpRequest *ma_slack_complete_request(const MaChannel *ch, const MaAlertMessage *msg,
												const char *file_id);

/*
 * Did the platform accept the request?  2xx plus, for chat platforms, their
 * own success code in the body.  On failure *err says why.
 */
extern bool ma_channel_response_ok(const MaChannel *ch, const MaHttpResponse *resp, char **err);

/* The string value of a top-level key in a small JSON object, or NULL. */
extern char *ma_json_string_field(const char *json, const char *key);

/* Building blocks, exposed for tests through SQL-callable wrappers. */
extern char *ma_base64(const char *data, size_t len);
extern void ma_hmac_sha256(const char *key, size_t keylen,
						   const char *msg, size_t msglen, uint8 *out);
extern char *ma_md5_hex(const char *data, size_t len);
extern char *ma_url_encode(const char *s);
extern char *ma_feishu_sign(const char *secret, int64 ts_s);
extern char *ma_dingtalk_sign(const char *secret, int64 ts_ms);

#endif							/* MA_CHANNEL_H */
