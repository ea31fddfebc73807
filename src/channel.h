/*
 * channel.h
 *		Alert channels: what each kind of channel sends, step by step, and
 *		how its answers are judged.  Pure code: no SPI, no network.
 *
 * A delivery is a sequence of requests.  ma_channel_next_request() gives the
 * request after `step` accepted ones (NULL when the delivery is complete),
 * and ma_channel_judge() says whether an answer was accepted and what later
 * steps must remember of it (`state`, stored with the delivery, so that a
 * retry resumes at the first step not yet accepted).  The kinds themselves
 * live in src/channel/, one file each; see channel/channel_kind.h.
 */
#ifndef MA_CHANNEL_H
#define MA_CHANNEL_H

#include "postgres.h"

#include "http.h"

typedef struct MaChannelKind MaChannelKind;

typedef struct MaChannel
{
	char	   *name;
	const MaChannelKind *kind;
	char	   *url;			/* secret */
	char	   *secret;			/* secret, or NULL */
	bool		chart;			/* options.chart (default true) */
	char	   *options;		/* alert_channels.options as JSON text */
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
	const char *png;			/* the chart, or NULL */
	size_t		png_len;
} MaAlertMessage;

/* What an answer means for the delivery. */
typedef enum MaVerdict
{
	MA_ACCEPTED,				/* go on with the next step */
	MA_RETRY,					/* try again later (timeouts, 429, 5xx, ...) */
	MA_GIVE_UP					/* never succeeds as it is (4xx, 3xx, refused) */
} MaVerdict;

/* The kind of alert_channels.kind, or NULL when unknown. */
extern const MaChannelKind *ma_channel_kind_by_name(const char *name);

/*
 * Does this channel send the chart (kind able to, configured to where the
 * kind asks, and options.chart)?
 */
extern bool ma_channel_carries_images(const MaChannel *ch);

/* May the channel's url be used (its kind's schemes, the allowlist)? */
extern bool ma_channel_url_allowed(const MaChannel *ch, char **reason);

/*
 * Requests the channel may receive per minute: options.rate_limit when set
 * (0 = no limit), else the limit the platform documents for the kind.
 */
extern int	ma_channel_rate_limit(const MaChannel *ch);

/*
 * The request after `step` accepted ones, or NULL when none is left.  state
 * is what ma_channel_judge() kept of earlier answers (NULL at first).  now_ms
 * is the wall clock in milliseconds since the Unix epoch (for signatures).
 */
extern MaHttpRequest *ma_channel_next_request(const MaChannel *ch, const MaAlertMessage *msg,
											  int step, const char *state, int64 now_ms);

/*
 * Judges the answer to request number `step`: 2xx plus, for chat platforms,
 * their own success code in the body.  On MA_ACCEPTED *state is what later
 * steps need (unchanged when the step leaves nothing); otherwise *err says
 * why, without the URL.
 */
extern MaVerdict ma_channel_judge(const MaChannel *ch, const MaAlertMessage *msg, int step,
								  const MaHttpResponse *resp, char **state, char **err);

#endif							/* MA_CHANNEL_H */
