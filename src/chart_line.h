/*
 * chart_line.h
 *		Line charts over time: one or more series, an optional right-hand
 *		axis, an expected band, anomaly markers, legend and title.  Data in,
 *		PNG out; pure C, see chart.h.
 */
#ifndef MA_CHART_LINE_H
#define MA_CHART_LINE_H

#include "chart.h"
#include "chart_scale.h"

typedef struct ChartSeries
{
	const char *label;			/* legend text; NULL or "" for none */
	int			n;
	const double *t;			/* Unix seconds, ascending */
	const double *v;			/* NaN breaks the line */
	const double *band_lo;		/* expected band, NaN where unknown; or NULL */
	const double *band_hi;
	const bool *anomaly;		/* red markers; or NULL */
	bool		right_axis;
	bool		dashed;
	bool		markers;		/* a dot on every point */
	ChartColor	color;
} ChartSeries;

typedef struct ChartLineSpec
{
	int			width;
	int			height;
	const char *title;			/* may be NULL */
	const char *subtitle;		/* may be NULL */
	const char *y_label;		/* left axis title; may be NULL */
	const char *y2_label;		/* right axis title; may be NULL */
	double		t_min;			/* x range; t_min >= t_max: from the data */
	double		t_max;
	double		gap;			/* break lines where points are further
								 * apart than this (seconds); 0: never */
	int			nseries;
	const ChartSeries *series;
	const char *band_label;
	const char *anomaly_label;
	ChartUtcOffsetFn utc_offset;	/* viewer's time zone; NULL for UTC */
	void	   *utc_offset_arg;
	const char *empty_message;	/* drawn when there is no finite point */
} ChartLineSpec;

/* Keys of the tEXt chunks describing the plot area (see chart_line.c). */
#define CHART_PLOT_TEXT_KEY "metric_anomaly.plot"
#define CHART_XTICKS_TEXT_KEY "metric_anomaly.xticks"
#define CHART_YTICKS_TEXT_KEY "metric_anomaly.yticks"
#define CHART_Y2TICKS_TEXT_KEY "metric_anomaly.y2ticks"

/* Default series colours, in order. */
extern const ChartColor chart_palette[];
extern const int chart_palette_size;

extern unsigned char *chart_line_render(const ChartLineSpec *spec,
										size_t *len,
										char *errbuf, size_t errlen);

#endif							/* MA_CHART_LINE_H */
