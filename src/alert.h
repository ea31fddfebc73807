/*
 * alert.h
 *		The seam between detection and alerting.
 *
 * Detection calls ma_alerts_after_detection() inside its own transaction,
 * with SPI connected, after it has written is_anomaly and anomaly_context of
 * the points it (re-)evaluated; alerting writes its outbox rows in that same
 * transaction; the delivery worker (delivery.h) sends them later.
 */
#ifndef MA_ALERT_H
#define MA_ALERT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

typedef struct MaEvaluatedPoint
{
	const char *metric_name;
	TimestampTz minute;			/* start of the minute */
	double		value;
	bool		evaluated;		/* false: too little history, or disabled */
	bool		is_anomaly;
	Jsonb	   *context;		/* NULL when !evaluated */
	/* the series' detection source and its alerting rule (N of M) */
	const char *method;			/* "robust", "3-sigma"; NULL: "3-sigma" */
	int			alert_after;	/* N: breaching points that open an episode */
	int			alert_window;	/* M: among the last M judged points */
} MaEvaluatedPoint;

/* Points are sorted by metric_name, then minute. */
extern void ma_alerts_after_detection(const MaEvaluatedPoint *points, int npoints);

/*
 * The episode rule detection alerts by, for a replay (detect_series(),
 * backtest()): resolve_after and cooldown from the settings, no age limit.
 */
struct MaEpisodeRule;
extern void ma_alert_replay_rule(struct MaEpisodeRule *rule, int need, int window);

/* Settings of alerting; called from _PG_init. */
extern void ma_alert_define_gucs(void);

/* Alerts and finished deliveries past their retention (pass.c). */
extern int	ma_alert_retention_s;
extern int64 ma_purge_alerts(TimestampTz older_than, int limit);

#endif							/* MA_ALERT_H */
