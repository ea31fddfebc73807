/*
 * chart_heatmap.h
 *		Heatmaps: a grid of cells, one per row and column label, coloured on
 *		a yellow-orange-red scale with a colour bar, each cell annotated with
 *		its value, empty cells marked, outlined cells for series that are
 *		anomalous now.  Data in, PNG out; pure C, see chart.h.
 */
#ifndef MA_CHART_HEATMAP_H
#define MA_CHART_HEATMAP_H

#include "chart.h"

/* Documented limits (the SQL functions refuse more with a clear error). */
#define CHART_HEATMAP_MAX_ROWS		50
#define CHART_HEATMAP_MAX_COLUMNS	50
#define CHART_HEATMAP_MAX_LABEL		64	/* characters of a row or column label */

/* Key of the tEXt chunk describing the grid (see chart_heatmap.c). */
#define CHART_HEATMAP_TEXT_KEY "metric_anomaly.heatmap"

/* Colours a test can compare against. */
#define CHART_HEATMAP_EMPTY_COLOR	0xeeeeee
#define CHART_HEATMAP_OUTLINE_COLOR 0x1f3fd0

typedef struct ChartHeatmapSpec
{
	int			width;
	int			height;
	const char *title;			/* may be NULL */
	const char *x_label;		/* under the column labels; may be NULL */
	const char *y_label;		/* left of the row labels; may be NULL */
	const char *value_label;	/* beside the colour bar; may be NULL */
	int			nrows;
	int			ncols;
	const char *const *row_labels;	/* top to bottom */
	const char *const *col_labels;	/* left to right */
	const double *cells;		/* nrows * ncols, row-major; NaN: empty */
	const bool *outlined;		/* nrows * ncols, or NULL */
} ChartHeatmapSpec;

/* The scale's colour at frac in [0, 1] (clamped): pale yellow to dark red. */
extern ChartColor chart_heatmap_color(double frac);

/* Dark or white text, whichever reads better on background. */
extern ChartColor chart_heatmap_text_color(ChartColor background);

extern unsigned char *chart_heatmap_render(const ChartHeatmapSpec *spec,
										   size_t *len,
										   char *errbuf, size_t errlen);

#endif							/* MA_CHART_HEATMAP_H */
