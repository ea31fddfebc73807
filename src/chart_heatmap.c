/*
 * chart_heatmap.c
 *		Heatmap drawing: a grid of labelled cells on the ColorBrewer YlOrRd
 *		scale, the value written in each cell, a colour bar with round ticks,
 *		empty cells in grey, anomalous cells outlined.
 *
 * Layout, from the top: title; the grid with the row labels right-aligned
 * on its left (the y label further left, written upwards) and the column
 * labels under it (horizontal when every one fits its cell, written upwards
 * otherwise), then the x label; the colour bar on the right.  The grid
 * takes what is left, split evenly: cell (i, j) spans
 *	x in [gx0 + j * (gx1 - gx0) / ncols, gx0 + (j + 1) * (gx1 - gx0) / ncols)
 *	y in [gy0 + i * (gy1 - gy0) / nrows, ...)
 * in integer arithmetic, less one white pixel at its right and bottom edges
 * (the grid lines).  The PNG carries "gx0 gy0 gx1 gy1 nrows ncols vmin vmax"
 * in its "metric_anomaly.heatmap" tEXt chunk, so tests compute where each
 * cell is.  The scale runs from the smallest to the largest finite value; a
 * single value (or all equal) is drawn in the middle of the scale.
 *
 * Text colour follows seaborn's rule: dark on cells whose relative
 * luminance is above 0.408, white below, so a value reads on every colour
 * of the scale.  Pure C, see chart.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chart_heatmap.h"
#include "chart_scale.h"

#define COLOR_TEXT		0x1f1f1f
#define COLOR_TICKTEXT	0x4a4a4a
#define COLOR_SUBTLE	0x707070
#define COLOR_SPINE		0x6b6b6b
#define COLOR_WHITE		0xffffff

/* ColorBrewer YlOrRd, 9 classes (matplotlib's and seaborn's "YlOrRd"). */
static const ChartColor ylorrd[] = {
	0xffffcc, 0xffeda0, 0xfed976, 0xfeb24c, 0xfd8d3c,
	0xfc4e2a, 0xe31a1c, 0xbd0026, 0x800026
};
#define YLORRD_N ((int) (sizeof(ylorrd) / sizeof(ylorrd[0])))

/* See chart_heatmap.h: linear interpolation between the nine classes. */
ChartColor
chart_heatmap_color(double frac)
{
	double		pos;
	int			k;
	double		f;
	ChartColor	a,
				b;
	int			r,
				g,
				bl;

	if (!(frac > 0))
		frac = 0;
	if (frac > 1)
		frac = 1;
	pos = frac * (YLORRD_N - 1);
	k = (int) floor(pos);
	if (k >= YLORRD_N - 1)
		return ylorrd[YLORRD_N - 1];
	f = pos - k;
	a = ylorrd[k];
	b = ylorrd[k + 1];
	r = (int) lround(((a >> 16) & 0xff) * (1 - f) + ((b >> 16) & 0xff) * f);
	g = (int) lround(((a >> 8) & 0xff) * (1 - f) + ((b >> 8) & 0xff) * f);
	bl = (int) lround((a & 0xff) * (1 - f) + (b & 0xff) * f);
	return (ChartColor) ((r << 16) | (g << 8) | bl);
}

/* sRGB channel 0..255 to linear light. */
static double
linear_channel(int v)
{
	double		c = v / 255.0;

	return c <= 0.03928 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}

/* See chart_heatmap.h: WCAG relative luminance against 0.408 (seaborn). */
ChartColor
chart_heatmap_text_color(ChartColor bg)
{
	double		lum = 0.2126 * linear_channel((bg >> 16) & 0xff) +
		0.7152 * linear_channel((bg >> 8) & 0xff) +
		0.0722 * linear_channel(bg & 0xff);

	return lum > 0.408 ? COLOR_TEXT : COLOR_WHITE;
}

/*
 * A cell's value with as many decimals as its size needs (three significant
 * digits, never fewer than the integer part).
 */
static void
format_cell(double v, char *buf, size_t len)
{
	double		a = fabs(v);

	if (a >= 100 || a == 0)
		snprintf(buf, len, "%.0f", v);
	else if (a >= 10)
		snprintf(buf, len, "%.1f", v);
	else if (a >= 1)
		snprintf(buf, len, "%.2f", v);
	else if (a >= 0.001)
		snprintf(buf, len, "%.3f", v);
	else
		snprintf(buf, len, "%.2e", v);
}

static double
round_half(double v)
{
	return floor(v * 2 + 0.5) / 2;
}

/* A frame of the given thickness just inside the rectangle. */
static void
outline_rect(ChartCanvas *c, int x0, int y0, int x1, int y1, int t,
			 ChartColor color)
{
	chart_fill_rect(c, x0, y0, x1, y0 + t - 1, color, 255);
	chart_fill_rect(c, x0, y1 - t + 1, x1, y1, color, 255);
	chart_fill_rect(c, x0, y0, x0 + t - 1, y1, color, 255);
	chart_fill_rect(c, x1 - t + 1, y0, x1, y1, color, 255);
}

static int
cell_edge(int lo, int hi, int k, int n)
{
	return lo + (int) (((long) (hi - lo) * k) / n);
}

/* Checks what the SQL layer checks too, so stand-alone callers are safe. */
static bool
spec_ok(const ChartHeatmapSpec *spec, char *errbuf, size_t errlen)
{
	if (spec->width < CHART_MIN_SIZE || spec->width > CHART_MAX_SIZE ||
		spec->height < CHART_MIN_SIZE || spec->height > CHART_MAX_SIZE)
	{
		snprintf(errbuf, errlen, "size %dx%d is outside %d to %d pixels",
				 spec->width, spec->height, CHART_MIN_SIZE, CHART_MAX_SIZE);
		return false;
	}
	if (spec->nrows < 0 || spec->nrows > CHART_HEATMAP_MAX_ROWS ||
		spec->ncols < 0 || spec->ncols > CHART_HEATMAP_MAX_COLUMNS)
	{
		snprintf(errbuf, errlen, "%d rows and %d columns exceed %d by %d",
				 spec->nrows, spec->ncols, CHART_HEATMAP_MAX_ROWS,
				 CHART_HEATMAP_MAX_COLUMNS);
		return false;
	}
	return true;
}

/*
 * Draws the heatmap; returns malloc'd PNG bytes, or NULL with a message in
 * errbuf.  No rows or no columns draws the axes' frame with "No data".
 */
unsigned char *
chart_heatmap_render(const ChartHeatmapSpec *spec, size_t *len,
					 char *errbuf, size_t errlen)
{
	ChartCanvas c;
	int			w = spec->width,
				h = spec->height;
	int			nr = spec->nrows,
				nc = spec->ncols;
	double		s,
				fs_title,
				fs_tick,
				fs_label,
				fs_cell;
	int			pad,
				th_title,
				th_tick,
				th_label,
				th_cell,
				row_label_w = 0,
				col_label_w = 0,
				bar_w,
				bar_label_w = 0,
				gx0,
				gy0,
				gx1,
				gy1,
				outline_t;
	bool		cols_upright = false;
	double		vmin = INFINITY,
				vmax = -INFINITY;
	ChartTicks	ticks;
	int			i,
				j;
	char		buf[256];
	char		meta[256];
	const char *keys[1] = {CHART_HEATMAP_TEXT_KEY};
	const char *values[1] = {meta};
	unsigned char *png = NULL;
	bool		any_outline = false;

	if (!spec_ok(spec, errbuf, errlen))
		return NULL;
	if (!chart_canvas_init(&c, w, h, COLOR_WHITE))
	{
		snprintf(errbuf, errlen, "out of memory for a %dx%d canvas", w, h);
		return NULL;
	}

	s = sqrt((double) w * h / (1200.0 * 600.0));
	if (s < 0.75)
		s = 0.75;
	if (s > 1.6)
		s = 1.6;
	fs_title = round_half(14 * s);
	fs_tick = round_half(9.5 * s);
	fs_label = round_half(10 * s);
	pad = (int) (14 * s);
	th_title = spec->title && *spec->title ?
		chart_text_height(&c, CHART_FONT_BOLD, fs_title) : 0;
	th_tick = chart_text_height(&c, CHART_FONT_REGULAR, fs_tick);
	th_label = chart_text_height(&c, CHART_FONT_REGULAR, fs_label);

	for (i = 0; i < nr * nc; i++)
		if (isfinite(spec->cells[i]))
		{
			if (spec->cells[i] < vmin)
				vmin = spec->cells[i];
			if (spec->cells[i] > vmax)
				vmax = spec->cells[i];
		}
	if (spec->outlined)
		for (i = 0; i < nr * nc; i++)
			any_outline |= spec->outlined[i];

	/* colour bar ticks, and the width their labels need */
	ticks.n = 0;
	if (vmin <= vmax)
	{
		chart_value_ticks(vmin == vmax ? vmin - 1 : vmin,
						  vmin == vmax ? vmax + 1 : vmax, 6, &ticks);
		for (i = 0; i < ticks.n; i++)
		{
			int			tw = chart_text_width(&c, CHART_FONT_REGULAR, fs_tick, ticks.label[i]);

			if (tw > bar_label_w)
				bar_label_w = tw;
		}
	}
	bar_w = (int) (18 * s);

	for (i = 0; i < nr; i++)
	{
		int			tw = chart_text_width(&c, CHART_FONT_REGULAR, fs_tick, spec->row_labels[i]);

		if (tw > row_label_w)
			row_label_w = tw;
	}
	if (row_label_w > w / 4)
		row_label_w = w / 4;

	gx0 = pad + (spec->y_label && *spec->y_label ? th_label + (int) (8 * s) : 0) +
		row_label_w + (int) (8 * s);
	gx1 = w - pad - bar_w - (int) (10 * s) - bar_label_w - (int) (24 * s) -
		(spec->value_label && *spec->value_label ? th_label + (int) (6 * s) : 0);
	gy0 = pad + (th_title ? th_title + (int) (10 * s) : 0);

	/* column labels: horizontal when each fits its cell, else upright */
	for (j = 0; j < nc; j++)
	{
		int			tw = chart_text_width(&c, CHART_FONT_REGULAR, fs_tick, spec->col_labels[j]);

		if (tw > col_label_w)
			col_label_w = tw;
	}
	if (nc > 0 && col_label_w > (gx1 - gx0) / nc - (int) (6 * s))
		cols_upright = true;
	if (col_label_w > h / 4)
		col_label_w = h / 4;
	gy1 = h - pad - (spec->x_label && *spec->x_label ? th_label + (int) (8 * s) : 0) -
		(cols_upright ? col_label_w : th_tick) - (int) (8 * s);

	if (gx1 - gx0 < 2 * (nc > 0 ? nc : 1) || gy1 - gy0 < 2 * (nr > 0 ? nr : 1))
	{
		snprintf(errbuf, errlen, "a %dx%d image has no room for %d rows and %d columns",
				 w, h, nr, nc);
		chart_canvas_release(&c);
		return NULL;
	}

	/* cells */
	fs_cell = fs_tick;
	if (nr > 0 && nc > 0)
	{
		int			cw = (gx1 - gx0) / nc,
					ch = (gy1 - gy0) / nr;

		/* smaller text in small cells, down to 6 points */
		while (fs_cell > 6 && chart_text_height(&c, CHART_FONT_REGULAR, fs_cell) > ch - 2)
			fs_cell -= 0.5;
		(void) cw;
	}
	th_cell = chart_text_height(&c, CHART_FONT_REGULAR, fs_cell);
	outline_t = (int) (3 * s);
	for (i = 0; i < nr; i++)
	{
		int			y0 = cell_edge(gy0, gy1, i, nr),
					y1 = cell_edge(gy0, gy1, i + 1, nr) - 2;

		for (j = 0; j < nc; j++)
		{
			int			x0 = cell_edge(gx0, gx1, j, nc),
						x1 = cell_edge(gx0, gx1, j + 1, nc) - 2;
			double		v = spec->cells[i * nc + j];
			ChartColor	bg;
			const char *label;

			if (isfinite(v))
			{
				bg = chart_heatmap_color(vmax > vmin ? (v - vmin) / (vmax - vmin) : 0.5);
				format_cell(v, buf, sizeof(buf));
				label = buf;
			}
			else
			{
				bg = CHART_HEATMAP_EMPTY_COLOR;
				label = chart_text_width(&c, CHART_FONT_REGULAR, fs_cell, "no data") <= x1 - x0 - 4 ?
					"no data" : "-";
			}
			chart_fill_rect(&c, x0, y0, x1, y1, bg, 255);
			if (spec->outlined && spec->outlined[i * nc + j] && x1 - x0 > 2 * outline_t)
				outline_rect(&c, x0, y0, x1, y1, outline_t, CHART_HEATMAP_OUTLINE_COLOR);
			if (chart_text_width(&c, CHART_FONT_REGULAR, fs_cell, label) <= x1 - x0 - 2 &&
				th_cell <= y1 - y0 + 1)
				chart_text(&c, (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2 - th_cell / 2,
						   CHART_FONT_REGULAR, fs_cell,
						   isfinite(v) ? chart_heatmap_text_color(bg) : COLOR_SUBTLE,
						   CHART_ALIGN_CENTER, label);
		}
	}
	if (nr == 0 || nc == 0)
		chart_text(&c, (gx0 + gx1) / 2, (gy0 + gy1) / 2 - th_title / 2,
				   CHART_FONT_BOLD, fs_title, COLOR_SUBTLE, CHART_ALIGN_CENTER, "No data");

	/* row labels, right-aligned, centred on their rows */
	for (i = 0; i < nr; i++)
	{
		int			yc = (cell_edge(gy0, gy1, i, nr) + cell_edge(gy0, gy1, i + 1, nr)) / 2;

		chart_text(&c, gx0 - (int) (8 * s), yc - th_tick / 2, CHART_FONT_REGULAR, fs_tick,
				   COLOR_TICKTEXT, CHART_ALIGN_RIGHT,
				   chart_fit_text(&c, CHART_FONT_REGULAR, fs_tick, spec->row_labels[i],
								  row_label_w, buf, sizeof(buf)));
	}
	/* column labels */
	for (j = 0; j < nc; j++)
	{
		int			x0 = cell_edge(gx0, gx1, j, nc),
					x1 = cell_edge(gx0, gx1, j + 1, nc);
		const char *label;

		if (cols_upright)
		{
			label = chart_fit_text(&c, CHART_FONT_REGULAR, fs_tick, spec->col_labels[j],
								   col_label_w, buf, sizeof(buf));
			chart_text_up(&c, (x0 + x1) / 2 - th_tick / 2,
						  gy1 + (int) (6 * s) +
						  chart_text_width(&c, CHART_FONT_REGULAR, fs_tick, label) / 2,
						  CHART_FONT_REGULAR, fs_tick, COLOR_TICKTEXT, label);
		}
		else
			chart_text(&c, (x0 + x1) / 2, gy1 + (int) (6 * s), CHART_FONT_REGULAR, fs_tick,
					   COLOR_TICKTEXT, CHART_ALIGN_CENTER, spec->col_labels[j]);
	}

	/* axis titles */
	if (spec->y_label && *spec->y_label)
		chart_text_up(&c, pad, (gy0 + gy1) / 2, CHART_FONT_REGULAR, fs_label, COLOR_TEXT,
					  chart_fit_text(&c, CHART_FONT_REGULAR, fs_label, spec->y_label,
									 gy1 - gy0, buf, sizeof(buf)));
	if (spec->x_label && *spec->x_label)
		chart_text(&c, (gx0 + gx1) / 2, h - pad - th_label, CHART_FONT_REGULAR, fs_label,
				   COLOR_TEXT, CHART_ALIGN_CENTER,
				   chart_fit_text(&c, CHART_FONT_REGULAR, fs_label, spec->x_label,
								  gx1 - gx0, buf, sizeof(buf)));
	if (th_title)
		chart_text(&c, (gx0 + gx1) / 2, pad, CHART_FONT_BOLD, fs_title, COLOR_TEXT,
				   CHART_ALIGN_CENTER,
				   chart_fit_text(&c, CHART_FONT_BOLD, fs_title, spec->title,
								  w - 2 * pad, buf, sizeof(buf)));

	/* colour bar: the scale bottom (vmin) to top (vmax), ticks on the right */
	if (vmin <= vmax)
	{
		int			bx0 = gx1 + (int) (24 * s),
					bx1 = bx0 + bar_w - 1;
		double		lo = vmin == vmax ? vmin - 1 : vmin,
					hi = vmin == vmax ? vmax + 1 : vmax;

		for (i = gy0; i < gy1; i++)
			chart_hline(&c, bx0, bx1, i,
						chart_heatmap_color((double) (gy1 - 1 - i) / (gy1 - 1 - gy0)), 0, 0);
		for (i = 0; i < ticks.n; i++)
		{
			int			y;

			if (ticks.v[i] < lo || ticks.v[i] > hi)
				continue;
			y = gy1 - 1 - (int) lround((ticks.v[i] - lo) / (hi - lo) * (gy1 - 1 - gy0));
			chart_hline(&c, bx1 + 1, bx1 + (int) (4 * s), y, COLOR_SPINE, 0, 0);
			chart_text(&c, bx1 + (int) (7 * s), y - th_tick / 2, CHART_FONT_REGULAR, fs_tick,
					   COLOR_TICKTEXT, CHART_ALIGN_LEFT, ticks.label[i]);
		}
		if (spec->value_label && *spec->value_label)
			chart_text_up(&c, bx1 + (int) (10 * s) + bar_label_w, (gy0 + gy1) / 2,
						  CHART_FONT_REGULAR, fs_label, COLOR_TEXT,
						  chart_fit_text(&c, CHART_FONT_REGULAR, fs_label, spec->value_label,
										 gy1 - gy0, buf, sizeof(buf)));
		if (any_outline)
		{
			/* the key of outlines, bottom right, level with the x label */
			const char *key = "anomalous now";
			int			box = th_tick,
						kx = w - pad - chart_text_width(&c, CHART_FONT_REGULAR, fs_tick, key),
						ky = h - pad - th_tick;

			outline_rect(&c, kx - box - (int) (5 * s), ky, kx - (int) (5 * s) - 1, ky + box - 1,
						 outline_t > 1 ? outline_t - 1 : 1, CHART_HEATMAP_OUTLINE_COLOR);
			chart_text(&c, kx, ky, CHART_FONT_REGULAR, fs_tick, COLOR_TICKTEXT,
					   CHART_ALIGN_LEFT, key);
		}
	}

	snprintf(meta, sizeof(meta), "%d %d %d %d %d %d %.17g %.17g",
			 gx0, gy0, gx1, gy1, nr, nc,
			 vmin <= vmax ? vmin : 0.0, vmin <= vmax ? vmax : 0.0);
	png = chart_png_encode(&c, keys, values, 1, len);
	if (png == NULL)
		snprintf(errbuf, errlen, "out of memory while encoding a %dx%d PNG", w, h);
	chart_canvas_release(&c);
	return png;
}
