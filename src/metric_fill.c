/*
 * metric_fill.c
 *		Zero-fill of definition series only while they are active.
 *
 * Count and sum series of 1 minute are zero-filled like event types
 * (aggregate.c), but a definition may have up to max_series series per
 * metric, and dimension values come and go (app versions, pipeline nodes):
 * filling and judging every series ever seen would make each pass cost
 * the history of the dimensions instead of their present.  So a definition
 * series rests once it has had no point for metric_anomaly.fill_horizon
 * (the horizon zero-fill already keeps; 7 days by default): its
 * series.filled_until becomes 'infinity', which zero-fill's scan (through
 * series_filled_until_idx) passes over, so it gets no zero rows and no
 * detection.  Its next event wakes it (the fold sets filled_until back to
 * before that event's minute, metrics.c), and zero-fill goes on from there:
 * the minutes it rested through have no rows rather than zeros.
 *
 * The cost: one probe of metric_points' primary key per series that is
 * due and not resting, so passes grow with the series active within the
 * horizon.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/timestamp.h"

#include "metrics.h"
#include "spi_util.h"

/*
 * Rests the definition series behind $1 (the last closed minute) without a
 * point after $2 (the minute before the fill horizon).
 */
static MaStatement rest_stmt = {
	"UPDATE metric_anomaly.series s SET filled_until = 'infinity'"
	"  FROM metric_anomaly.metric_series ms"
	" WHERE ms.series_name = s.metric_name AND s.filled_until < $1"
	"   AND NOT EXISTS (SELECT 1 FROM metric_anomaly.metric_points p"
	"                    WHERE p.series_name = ms.series_name AND p.bucket > $2)",
	2, {TIMESTAMPTZOID, TIMESTAMPTZOID}
};

/*
 * Rests the definition series that zero-fill up to last_closed would fill
 * without any point after floor (fill_horizon before it).  Returns how
 * many went to rest.
 */
int64
ma_metrics_rest(TimestampTz last_closed, TimestampTz floor)
{
	Datum		args[2];

	args[0] = TimestampTzGetDatum(last_closed);
	args[1] = TimestampTzGetDatum(floor);
	return (int64) ma_execute(&rest_stmt, args, NULL, SPI_OK_UPDATE, 0);
}
