/*
 * chart_sql.h
 *		C entry points of the SQL chart functions, for other modules.
 */
#ifndef MA_CHART_SQL_H
#define MA_CHART_SQL_H

#include "postgres.h"

#include "datatype/timestamp.h"

/*
 * render_metric_chart(metric, since, until) at its default size (1200 x
 * 600), as a palloc'd bytea; errors as the SQL function's.  SPI may be
 * connected.
 */
extern bytea *ma_render_metric_chart(const char *metric, TimestampTz since, TimestampTz until);

#endif							/* MA_CHART_SQL_H */
