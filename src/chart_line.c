/*
 * chart_line.c
 *		Lays out and draws a time-series line chart: title and subtitle,
 *		legend, left and optional right value axes with round ticks, a time
 *		axis with round local times, a light grid, shaded expected bands,
 *		antialiased (optionally dashed) lines that break at gaps, point
 *		markers and red anomaly markers.
 *
 * The PNG carries a tEXt chunk "metric_anomaly.plot" describing the plot
 * area and its data ranges, so that a client (or a test) can map pixels to
 * times and values:
 *		x0 y0 x1 y1 t0 t1 v0 v1 [w0 w1]
 * x = x0 + (t - t0) / (t1 - t0) * (x1 - x0) and
 * y = y1 - (v - v0) / (v1 - v0) * (y1 - y0) in continuous pixel coordinates
 * (pixel column floor(x)); w0 w1 is the right axis' range, if any.  A
 * second chunk, "metric_anomaly.xticks", lists the time ticks drawn as
 * "unix_seconds label" entries separated by "|"; "metric_anomaly.yticks"
 * (and "metric_anomaly.y2ticks" with a right axis) the value ticks as
 * "value label" entries, after "offset +1e9" when the labels are
 * differences from a shared offset.
 * Pure C, see chart.h.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chart_line.h"

const ChartColor chart_palette[] = {
	0x3a6fd8,					/* blue */
	0xe8780c,					/* orange */
	0x2e9e44,					/* green */
	0x8b53c6,					/* purple */
	0xd63384,					/* pink */
	0x17a2b8,					/* teal */
	0x6c757d					/* grey */
};
const int	chart_palette_size = sizeof(chart_palette) / sizeof(chart_palette[0]);

#define COLOR_TEXT		0x1f1f1f
#define COLOR_TICKTEXT	0x4a4a4a
#define COLOR_SUBTLE	0x707070
#define COLOR_GRID		0xe6e6e6
#define COLOR_SPINE		0x6b6b6b
#define COLOR_ANOMALY	0xe0201b
#define COLOR_WHITE		0xffffff
#define BAND_ALPHA		48

typedef struct Axis
{
	bool		used;
	double		lo;
	double		hi;
	ChartTicks	ticks;
	int			label_w;		/* widest tick label */
} Axis;

typedef struct Layout
{
	double		s;				/* scale for sizes */
	double		fs_title,
				fs_sub,
				fs_tick,
				fs_label,
				fs_legend;
	int			x0,
				y0,
				x1,
				y1;				/* plot area, continuous coordinates */
	double		t0,
				t1;
	Axis		left,
				right;
} Layout;

static double
round_half(double v)
{
	return floor(v * 2 + 0.5) / 2;
}

static inline double
map_x(const Layout *L, double t)
{
	return L->x0 + (t - L->t0) / (L->t1 - L->t0) * (L->x1 - L->x0);
}

static inline double
map_y(const Layout *L, const Axis *a, double v)
{
	/* halves: ranges near the largest doubles must not overflow */
	return L->y1 - (v / 2 - a->lo / 2) / (a->hi / 2 - a->lo / 2) * (L->y1 - L->y0);
}

/*
 * A mapped coordinate as a pixel index.  Ticks can map far outside the
 * canvas (make fuzz found -3.5e11 for a time tick), and converting a double
 * outside int's range is undefined, so such values (and NaN) become a pixel
 * that is off every canvas, which callers skip.
 */
static inline int
to_pixel(double p)
{
	if (!(p > -1e6))
		return -1000000;
	if (p > 1e6)
		return 1000000;
	return (int) floor(p);
}

/* Extends [*lo, *hi] by v when v is finite. */
static void
widen(double v, double *lo, double *hi)
{
	if (!isfinite(v))
		return;
	if (v < *lo)
		*lo = v;
	if (v > *hi)
		*hi = v;
}

/* Finds an axis' data range, with a 5% margin; false when it has no data. */
static bool
axis_range(const ChartLineSpec *spec, bool right, double t0, double t1,
		   Axis *a)
{
	double		lo = INFINITY,
				hi = -INFINITY;
	int			i,
				j;

	for (i = 0; i < spec->nseries; i++)
	{
		const ChartSeries *se = &spec->series[i];

		if (se->right_axis != right)
			continue;
		for (j = 0; j < se->n; j++)
		{
			if (se->t[j] < t0 || se->t[j] > t1)
				continue;
			widen(se->v[j], &lo, &hi);
			if (se->band_lo)
				widen(se->band_lo[j], &lo, &hi);
			if (se->band_hi)
				widen(se->band_hi[j], &lo, &hi);
		}
	}
	if (!(lo <= hi))
		return false;
	if (hi - lo <= fabs(hi) * 1e-12 || hi == lo)
	{
		double		d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;

		lo -= d;
		hi += d;
	}
	else
	{
		double		m = (hi / 2 - lo / 2) * 0.1;

		/* values near +-DBL_MAX: the margin stops at the largest double */
		lo = fmax(lo - m, -DBL_MAX);
		hi = fmin(hi + m, DBL_MAX);
	}
	a->used = true;
	a->lo = lo;
	a->hi = hi;
	return true;
}

static void
axis_ticks(ChartCanvas *c, Layout *L, Axis *a, int plot_h)
{
	int			th = chart_text_height(c, CHART_FONT_REGULAR, L->fs_tick);
	int			max_ticks = plot_h / (th * 3);
	int			i;

	if (max_ticks > 10)
		max_ticks = 10;
	chart_value_ticks(a->lo, a->hi, max_ticks, &a->ticks);
	a->label_w = 0;
	for (i = 0; i < a->ticks.n; i++)
	{
		int			w = chart_text_width(c, CHART_FONT_REGULAR, L->fs_tick,
										 a->ticks.label[i]);

		if (w > a->label_w)
			a->label_w = w;
	}
}

/*
 * Chooses time ticks whose labels do not overlap, fewer and fewer until
 * they fit.
 */
static void
time_ticks(ChartCanvas *c, const ChartLineSpec *spec, Layout *L,
		   ChartTicks *tt)
{
	int			gap = (int) (16 * L->s);
	int			w_est = chart_text_width(c, CHART_FONT_REGULAR, L->fs_tick, "Nov 00");
	int			max_ticks = (L->x1 - L->x0) / (w_est + gap) + 1;

	/* a plot too narrow for two labels has none (make fuzz found tt unset) */
	tt->n = 0;
	for (; max_ticks >= 2; max_ticks--)
	{
		int			i;
		double		prev_right = -1e9;
		bool		ok = true;

		chart_time_ticks(L->t0, L->t1, max_ticks, spec->utc_offset,
						 spec->utc_offset_arg, tt);
		for (i = 0; i < tt->n && ok; i++)
		{
			double		x = map_x(L, tt->v[i]);
			int			w = chart_text_width(c, CHART_FONT_REGULAR, L->fs_tick,
											 tt->label[i]);

			if (x - w / 2.0 < prev_right + gap)
				ok = false;
			prev_right = x + w / 2.0;
		}
		if (ok)
			return;
	}
}

typedef struct LegendItem
{
	int			kind;			/* 0 line, 1 band, 2 anomaly */
	const ChartSeries *series;
	const char *text;
	char		buf[96];		/* text with " (right axis)" */
} LegendItem;

#define MAX_LEGEND 32

static int
legend_width(ChartCanvas *c, const Layout *L, const LegendItem *it, int n)
{
	int			w = 0,
				i;

	for (i = 0; i < n; i++)
		w += (int) (26 * L->s) + chart_text_width(c, CHART_FONT_REGULAR,
												  L->fs_legend, it[i].text) +
			(i + 1 < n ? (int) (18 * L->s) : 0);
	return w;
}

static void
draw_legend(ChartCanvas *c, const Layout *L, const LegendItem *it, int n,
			int x, int y)
{
	int			th = chart_text_height(c, CHART_FONT_REGULAR, L->fs_legend);
	double		cy = y + th / 2.0;
	int			i;

	for (i = 0; i < n; i++)
	{
		double		sw = 20 * L->s;

		if (it[i].kind == 0)
		{
			ChartDash	dash = {it[i].series->dashed ? 6 * L->s : 0, 3 * L->s, 0};

			chart_stroke_segment(c, x, cy, x + sw, cy, 2.0 * L->s, &dash);
			chart_stroke_finish(c, it[i].series->color);
			if (it[i].series->markers)
			{
				chart_disc(c, x + sw / 2, cy, 3.2 * L->s + 1, COLOR_WHITE);
				chart_disc(c, x + sw / 2, cy, 3.2 * L->s, it[i].series->color);
			}
		}
		else if (it[i].kind == 1)
			chart_fill_rect(c, x, (int) (cy - 5 * L->s), (int) (x + sw),
							(int) (cy + 5 * L->s), it[i].series->color, BAND_ALPHA);
		else
		{
			chart_disc(c, x + sw / 2, cy, 5 * L->s + 1.2, COLOR_WHITE);
			chart_disc(c, x + sw / 2, cy, 5 * L->s, COLOR_ANOMALY);
		}
		x += (int) (26 * L->s);
		chart_text(c, x, y, CHART_FONT_REGULAR, L->fs_legend, COLOR_TEXT,
				   CHART_ALIGN_LEFT, it[i].text);
		x += chart_text_width(c, CHART_FONT_REGULAR, L->fs_legend, it[i].text) +
			(int) (18 * L->s);
	}
}

/*
 * Copies s into buf, shortened with "..." so that it fits in maxw pixels.
 */

/* True when the line must break between points j-1 and j. */
static inline bool
is_gap(const ChartLineSpec *spec, const ChartSeries *se, int j)
{
	return spec->gap > 0 && se->t[j] - se->t[j - 1] > spec->gap;
}

/* Shades a series' band, run by run. */
static bool
draw_band(ChartCanvas *c, const ChartLineSpec *spec, const Layout *L,
		  const ChartSeries *se, const Axis *a)
{
	double	   *px = malloc(sizeof(double) * se->n * 3);
	double	   *plo,
			   *phi;
	int			j,
				start = 0;

	if (px == NULL)
		return false;
	plo = px + se->n;
	phi = plo + se->n;
	for (j = 0; j < se->n; j++)
	{
		px[j] = map_x(L, se->t[j]);
		plo[j] = isfinite(se->band_lo[j]) ? map_y(L, a, se->band_lo[j]) : NAN;
		phi[j] = isfinite(se->band_hi[j]) ? map_y(L, a, se->band_hi[j]) : NAN;
	}
	for (j = 1; j <= se->n; j++)
	{
		if (j == se->n || is_gap(spec, se, j))
		{
			chart_fill_between(c, px + start, plo + start, phi + start,
							   j - start, L->y0, L->y1 - 1, se->color,
							   BAND_ALPHA);
			start = j;
		}
	}
	free(px);
	return true;
}

/*
 * Draws a series' line, breaking it at NaN values and gaps.  A dense series
 * (more than four points per pixel column) is first reduced, per column and
 * unbroken run, to its first, lowest, highest and last points (M4), which
 * draws the same line with a fraction of the segments.  False when out of
 * memory.
 */
static bool
draw_line(ChartCanvas *c, const ChartLineSpec *spec, const Layout *L,
		  const ChartSeries *se, const Axis *a)
{
	ChartDash	dash = {se->dashed ? 7 * L->s : 0, 4 * L->s, 0};
	double		lw = 2.0 * L->s;
	int			cap = 2 * se->n + 2;
	double	   *xs = malloc(sizeof(double) * 2 * cap);
	double	   *ys;
	int			m = 0,
				j,
				run_start = -1;

	if (xs == NULL)
		return false;
	ys = xs + cap;

	/* pixel positions; a NaN x marks a break */
	for (j = 0; j < se->n; j++)
	{
		if (!isfinite(se->v[j]))
		{
			xs[m] = NAN;
			ys[m++] = NAN;
			continue;
		}
		if (j > 0 && is_gap(spec, se, j))
		{
			xs[m] = NAN;
			ys[m++] = NAN;
		}
		xs[m] = map_x(L, se->t[j]);
		ys[m++] = map_y(L, a, se->v[j]);
	}

	if (m > 4 * (L->x1 - L->x0))
	{
		/* M4: keep first, min, max, last of each column's stretch */
		int			out = 0,
					i = 0;

		while (i < m)
		{
			int			col,
						k,
						first = i,
						lo = i,
						hi = i,
						last = i,
						keep[4],
						nkeep = 0,
						q;

			if (isnan(xs[i]))
			{
				xs[out] = ys[out] = NAN;
				out++;
				i++;
				continue;
			}
			col = (int) floor(xs[i]);
			for (k = i + 1; k < m && !isnan(xs[k]) && (int) floor(xs[k]) == col; k++)
			{
				if (ys[k] < ys[lo])
					lo = k;
				if (ys[k] > ys[hi])
					hi = k;
				last = k;
			}
			keep[nkeep++] = first;
			if (lo < hi)
			{
				keep[nkeep++] = lo;
				keep[nkeep++] = hi;
			}
			else
			{
				keep[nkeep++] = hi;
				keep[nkeep++] = lo;
			}
			keep[nkeep++] = last;
			for (q = 0; q < nkeep; q++)
			{
				if (q > 0 && keep[q] == keep[q - 1])
					continue;
				if (q > 1 && keep[q] == keep[q - 2])
					continue;
				xs[out] = xs[keep[q]];
				ys[out] = ys[keep[q]];
				out++;
			}
			i = k;
		}
		m = out;
	}

	for (j = 0; j <= m; j++)
	{
		if (j == m || isnan(xs[j]))
		{
			/* an isolated point gets a dot so that it stays visible */
			if (run_start >= 0 && j - run_start == 1 && !se->markers)
				chart_disc(c, xs[run_start], ys[run_start], lw, se->color);
			run_start = -1;
			dash.phase = 0;
			continue;
		}
		if (run_start < 0)
			run_start = j;
		else
			chart_stroke_segment(c, xs[j - 1], ys[j - 1], xs[j], ys[j], lw, &dash);
	}
	chart_stroke_finish(c, se->color);
	free(xs);
	return true;
}

static void
draw_points(ChartCanvas *c, const Layout *L, const ChartSeries *se,
			const Axis *a, bool anomalies)
{
	double		r = anomalies ? 5.0 * L->s : 3.2 * L->s;
	int			j;

	for (j = 0; j < se->n; j++)
	{
		double		x,
					y;

		if (!isfinite(se->v[j]) || (anomalies && !se->anomaly[j]))
			continue;
		x = map_x(L, se->t[j]);
		y = map_y(L, a, se->v[j]);
		chart_disc(c, x, y, r + 1.2, COLOR_WHITE);
		chart_disc(c, x, y, r, anomalies ? COLOR_ANOMALY : se->color);
	}
}

/* Draws a value axis' ticks and labels on the left or right side. */
static void
draw_value_axis(ChartCanvas *c, const Layout *L, const Axis *a, bool right,
				int tick_len)
{
	int			th = chart_text_height(c, CHART_FONT_REGULAR, L->fs_tick);
	int			i;
	int			xs = right ? L->x1 : L->x0 - 1;

	/* a shared offset is written once, above the axis, like matplotlib */
	if (a->ticks.offset_label[0])
		chart_text(c, right ? c->width - (int) (14 * L->s) : L->x0,
				   L->y0 - th - (int) (2 * L->s), CHART_FONT_REGULAR,
				   L->fs_tick, COLOR_TICKTEXT,
				   right ? CHART_ALIGN_RIGHT : CHART_ALIGN_LEFT,
				   a->ticks.offset_label);
	for (i = 0; i < a->ticks.n; i++)
	{
		int			y = to_pixel(map_y(L, a, a->ticks.v[i]));

		if (y < L->y0 || y > L->y1)
			continue;
		if (right)
		{
			chart_hline(c, xs + 1, xs + tick_len, y, COLOR_SPINE, 0, 0);
			chart_text(c, xs + tick_len + 4, y - th / 2, CHART_FONT_REGULAR,
					   L->fs_tick, COLOR_TICKTEXT, CHART_ALIGN_LEFT,
					   a->ticks.label[i]);
		}
		else
		{
			chart_hline(c, xs - tick_len, xs - 1, y, COLOR_SPINE, 0, 0);
			chart_text(c, xs - tick_len - 4, y - th / 2, CHART_FONT_REGULAR,
					   L->fs_tick, COLOR_TICKTEXT, CHART_ALIGN_RIGHT,
					   a->ticks.label[i]);
		}
	}
}

/*
 * Lists an axis' ticks for its tEXt chunk: "value label" entries separated
 * by "|", bottom to top, after an "offset +1e9" entry when the labels are
 * differences from a shared offset; "" for an unused axis.
 */
static void
value_ticks_text(const Axis *a, char *buf, size_t len)
{
	int			i;

	buf[0] = '\0';
	if (!a->used)
		return;
	if (a->ticks.offset_label[0])
		snprintf(buf, len, "offset %s", a->ticks.offset_label);
	for (i = 0; i < a->ticks.n; i++)
	{
		size_t		used = strlen(buf);

		snprintf(buf + used, len - used, "%s%.17g %s", used ? "|" : "",
				 a->ticks.v[i], a->ticks.label[i]);
	}
}

/*
 * Renders the chart described by spec; returns malloc'd PNG bytes, or NULL
 * with a message in errbuf.
 */
unsigned char *
chart_line_render(const ChartLineSpec *spec, size_t *len, char *errbuf,
				  size_t errlen)
{
	ChartCanvas c;
	Layout		L;
	ChartTicks	tt;
	LegendItem	legend[MAX_LEGEND];
	int			nlegend = 0;
	int			w = spec->width,
				h = spec->height;
	int			pad,
				tick_len,
				th_tick,
				th_title,
				th_sub,
				th_legend,
				th_label,
				top,
				legend_y;
	bool		any_left = false,
				any_right = false,
				any_anomaly = false,
				has_data,
				legend_own_row = true;
	int			i,
				j;
	char		meta[512];
	char		xticks[CHART_MAX_TICKS * 48];
	char		yticks[2][CHART_MAX_TICKS * 64];
	const char *keys[4] = {CHART_PLOT_TEXT_KEY, CHART_XTICKS_TEXT_KEY,
	CHART_YTICKS_TEXT_KEY, CHART_Y2TICKS_TEXT_KEY};
	const char *values[4] = {meta, xticks, yticks[0], yticks[1]};
	unsigned char *png = NULL;
	const ChartSeries *band_series = NULL;

	memset(&L, 0, sizeof(L));
	/*
	 * The background is filled once, in two parts: the plot area before
	 * the grid and the margins after the data, which may bleed into them.
	 * Filling the whole canvas first wrote the margins twice (0.7 of the
	 * 2.9 MB at 1200 x 600, memory-bound).
	 */
	if (!chart_canvas_init(&c, w, h, CHART_NO_BACKGROUND))
	{
		snprintf(errbuf, errlen, "out of memory for a %dx%d canvas", w, h);
		return NULL;
	}

	L.s = sqrt((double) w * h / (1200.0 * 600.0));
	if (L.s < 0.75)
		L.s = 0.75;
	if (L.s > 1.6)
		L.s = 1.6;
	L.fs_title = round_half(14 * L.s);
	L.fs_sub = round_half(9.5 * L.s);
	L.fs_tick = round_half(9.5 * L.s);
	L.fs_label = round_half(10 * L.s);
	L.fs_legend = round_half(9.5 * L.s);
	pad = (int) (14 * L.s);
	tick_len = (int) (5 * L.s);
	th_tick = chart_text_height(&c, CHART_FONT_REGULAR, L.fs_tick);
	th_title = spec->title && *spec->title ?
		chart_text_height(&c, CHART_FONT_BOLD, L.fs_title) : 0;
	th_sub = spec->subtitle && *spec->subtitle ?
		chart_text_height(&c, CHART_FONT_REGULAR, L.fs_sub) : 0;
	th_legend = chart_text_height(&c, CHART_FONT_REGULAR, L.fs_legend);
	th_label = chart_text_height(&c, CHART_FONT_REGULAR, L.fs_label);

	/* x range */
	L.t0 = spec->t_min;
	L.t1 = spec->t_max;
	if (!(L.t0 < L.t1))
	{
		L.t0 = INFINITY;
		L.t1 = -INFINITY;
		for (i = 0; i < spec->nseries; i++)
			for (j = 0; j < spec->series[i].n; j++)
				if (isfinite(spec->series[i].v[j]))
					widen(spec->series[i].t[j], &L.t0, &L.t1);
		if (!(L.t0 <= L.t1))
			L.t0 = L.t1 = 0;
		if (L.t0 == L.t1)
		{
			L.t0 -= 60;
			L.t1 += 60;
		}
	}

	/* value ranges; a chart with only right-axis series uses the left */
	for (i = 0; i < spec->nseries; i++)
	{
		if (spec->series[i].right_axis)
			any_right = true;
		else
			any_left = true;
	}
	has_data = axis_range(spec, false, L.t0, L.t1, &L.left);
	if (any_right)
	{
		if (any_left)
			axis_range(spec, true, L.t0, L.t1, &L.right);
		else
			has_data = axis_range(spec, true, L.t0, L.t1, &L.left);
	}

	/* legend entries */
	for (i = 0; i < spec->nseries && nlegend < MAX_LEGEND - 2; i++)
	{
		const ChartSeries *se = &spec->series[i];

		if (se->label && *se->label)
		{
			legend[nlegend].kind = 0;
			legend[nlegend].series = se;
			legend[nlegend].text = se->label;
			if (se->right_axis && any_left)
			{
				snprintf(legend[nlegend].buf, sizeof(legend[nlegend].buf),
						 "%s (right axis)", se->label);
				legend[nlegend].text = legend[nlegend].buf;
			}
			nlegend++;
		}
		for (j = 0; j < se->n; j++)
		{
			if (se->band_lo && isfinite(se->band_lo[j]) && isfinite(se->band_hi[j]) && !band_series)
				band_series = se;
			if (se->anomaly && se->anomaly[j] && isfinite(se->v[j]))
				any_anomaly = true;
		}
	}
	if (band_series && spec->band_label)
	{
		legend[nlegend].kind = 1;
		legend[nlegend].series = band_series;
		legend[nlegend].text = spec->band_label;
		nlegend++;
	}
	if (any_anomaly && spec->anomaly_label)
	{
		legend[nlegend].kind = 2;
		legend[nlegend].series = NULL;
		legend[nlegend].text = spec->anomaly_label;
		nlegend++;
	}
	if (!has_data || h < 200)
		nlegend = 0;

	/* vertical layout */
	top = pad;
	if (th_title)
		top += th_title + (int) (4 * L.s);
	if (th_sub && h >= 200)
		top += th_sub + (int) (4 * L.s);
	legend_y = top + (int) (4 * L.s);
	if (nlegend)
		top += th_legend + (int) (12 * L.s);
	else
		top += (int) (6 * L.s);
	L.y0 = top;
	L.y1 = h - pad - th_tick - tick_len - (int) (4 * L.s);
	if (L.y1 - L.y0 < 20)
	{
		L.y0 = pad;
		L.y1 = h - pad;
	}

	/* horizontal layout */
	if (L.left.used)
		axis_ticks(&c, &L, &L.left, L.y1 - L.y0);
	if (L.right.used)
		axis_ticks(&c, &L, &L.right, L.y1 - L.y0);
	if (L.y1 - L.y0 > 2 * th_tick + 20 &&
		((L.left.used && L.left.ticks.offset_label[0]) ||
		 (L.right.used && L.right.ticks.offset_label[0])))
	{
		/* room above the plot for the offset ("+1e9") */
		L.y0 += th_tick;
		if (L.left.used)
			axis_ticks(&c, &L, &L.left, L.y1 - L.y0);
		if (L.right.used)
			axis_ticks(&c, &L, &L.right, L.y1 - L.y0);
	}
	L.x0 = pad + (L.left.used ? L.left.label_w + tick_len + 6 : 0);
	if (spec->y_label && *spec->y_label && w >= 300)
		L.x0 += th_label + (int) (8 * L.s);
	if (L.right.used)
	{
		L.x1 = w - pad - L.right.label_w - tick_len - 6;
		if (spec->y2_label && *spec->y2_label && w >= 300)
			L.x1 -= th_label + (int) (8 * L.s);
	}
	else
		L.x1 = w - pad - chart_text_width(&c, CHART_FONT_REGULAR, L.fs_tick, "Nov 00") / 2;
	if (L.x1 - L.x0 < 20)
	{
		L.x0 = pad;
		L.x1 = w - pad;
	}

	/* a legend that does not fit the width is left out */
	if (nlegend && legend_width(&c, &L, legend, nlegend) > w - 2 * pad)
		nlegend = 0;

	/* legend on the title row when it fits there */
	if (nlegend && th_title &&
		chart_text_width(&c, CHART_FONT_BOLD, L.fs_title, spec->title) +
		legend_width(&c, &L, legend, nlegend) + 40 * L.s < L.x1 - L.x0)
	{
		legend_own_row = false;
		legend_y = pad + (th_title - th_legend) / 2;
		L.y0 -= th_legend + (int) (6 * L.s);
	}

	/* the plot area's background, spine column included; then the grid */
	chart_fill_rect(&c, L.x0 - 1, L.y0, L.x1, L.y1, COLOR_WHITE, 255);
	time_ticks(&c, spec, &L, &tt);
	for (i = 0; i < tt.n; i++)
	{
		int			x = to_pixel(map_x(&L, tt.v[i]));

		if (x > L.x0 && x < L.x1)
			chart_vline(&c, x, L.y0, L.y1 - 1, COLOR_GRID, 0, 0);
	}
	if (L.left.used)
		for (i = 0; i < L.left.ticks.n; i++)
		{
			int			y = to_pixel(map_y(&L, &L.left, L.left.ticks.v[i]));

			if (y >= L.y0 && y < L.y1)
				chart_hline(&c, L.x0, L.x1 - 1, y, COLOR_GRID, 0, 0);
		}

	/* data */
	if (has_data)
	{
		for (i = 0; i < spec->nseries; i++)
		{
			const ChartSeries *se = &spec->series[i];
			const Axis *a = (se->right_axis && L.right.used) ? &L.right : &L.left;

			if (se->band_lo && se->band_hi && !draw_band(&c, spec, &L, se, a))
			{
				snprintf(errbuf, errlen, "out of memory for a chart band");
				goto done;
			}
		}
		for (i = 0; i < spec->nseries; i++)
		{
			const ChartSeries *se = &spec->series[i];
			const Axis *a = (se->right_axis && L.right.used) ? &L.right : &L.left;

			if (!draw_line(&c, spec, &L, se, a))
			{
				snprintf(errbuf, errlen, "out of memory for a chart line");
				goto done;
			}
			if (se->markers)
				draw_points(&c, &L, se, a, false);
		}
	}
	else if (spec->empty_message)
	{
		chart_text(&c, (L.x0 + L.x1) / 2,
				   (L.y0 + L.y1) / 2 - chart_text_height(&c, CHART_FONT_BOLD, L.fs_title) / 2,
				   CHART_FONT_BOLD, L.fs_title, COLOR_SUBTLE, CHART_ALIGN_CENTER,
				   spec->empty_message);
	}

	/*
	 * the margins' background (covering what the strokes bled into), which
	 * with the plot area's is every pixel once; then the frame
	 */
	chart_fill_rect(&c, 0, 0, w - 1, L.y0 - 1, COLOR_WHITE, 255);
	chart_fill_rect(&c, 0, L.y1 + 1, w - 1, h - 1, COLOR_WHITE, 255);
	chart_fill_rect(&c, 0, L.y0, L.x0 - 2, L.y1, COLOR_WHITE, 255);
	chart_fill_rect(&c, L.x1 + 1, L.y0, w - 1, L.y1, COLOR_WHITE, 255);
	chart_vline(&c, L.x0 - 1, L.y0, L.y1, COLOR_SPINE, 0, 0);
	chart_hline(&c, L.x0 - 1, L.x1, L.y1, COLOR_SPINE, 0, 0);
	if (L.right.used)
		chart_vline(&c, L.x1, L.y0, L.y1, COLOR_SPINE, 0, 0);

	/* anomaly markers stay whole at the edges of the plot */
	for (i = 0; i < spec->nseries && has_data; i++)
	{
		const ChartSeries *se = &spec->series[i];
		const Axis *a = (se->right_axis && L.right.used) ? &L.right : &L.left;

		if (se->anomaly)
			draw_points(&c, &L, se, a, true);
	}

	/* axes */
	for (i = 0; i < tt.n; i++)
	{
		int			x = to_pixel(map_x(&L, tt.v[i]));
		int			tw = chart_text_width(&c, CHART_FONT_REGULAR, L.fs_tick, tt.label[i]);
		int			tx = x - tw / 2;

		if (x < L.x0 - 1 || x > L.x1)
			continue;
		chart_vline(&c, x, L.y1 + 1, L.y1 + tick_len, COLOR_SPINE, 0, 0);
		if (tx < 2)
			tx = 2;
		if (tx + tw > w - 2)
			tx = w - 2 - tw;
		chart_text(&c, tx, L.y1 + tick_len + (int) (3 * L.s), CHART_FONT_REGULAR,
				   L.fs_tick, COLOR_TICKTEXT, CHART_ALIGN_LEFT, tt.label[i]);
	}
	if (L.left.used && has_data)
		draw_value_axis(&c, &L, &L.left, false, tick_len);
	if (L.right.used && has_data)
		draw_value_axis(&c, &L, &L.right, true, tick_len);
	if (spec->y_label && *spec->y_label && w >= 300)
		chart_text_up(&c, pad, (L.y0 + L.y1) / 2, CHART_FONT_REGULAR, L.fs_label,
					  COLOR_TEXT, spec->y_label);
	if (spec->y2_label && *spec->y2_label && w >= 300 && L.right.used)
		chart_text_up(&c, w - pad - th_label, (L.y0 + L.y1) / 2,
					  CHART_FONT_REGULAR, L.fs_label, COLOR_TEXT, spec->y2_label);

	/* title, subtitle, legend */
	{
		int			tx = L.x0;
		int			avail = w - pad - L.x0;
		char		buf[256];

		if (avail < w / 2)
		{
			tx = pad;
			avail = w - 2 * pad;
		}
		if (th_title)
			chart_text(&c, tx, pad, CHART_FONT_BOLD, L.fs_title, COLOR_TEXT,
					   CHART_ALIGN_LEFT,
					   chart_fit_text(&c, CHART_FONT_BOLD, L.fs_title, spec->title,
								legend_own_row ? avail :
								avail - legend_width(&c, &L, legend, nlegend) - (int) (20 * L.s),
								buf, sizeof(buf)));
		if (th_sub && h >= 200)
			chart_text(&c, tx, pad + th_title + (th_title ? (int) (4 * L.s) : 0),
					   CHART_FONT_REGULAR, L.fs_sub, COLOR_SUBTLE, CHART_ALIGN_LEFT,
					   chart_fit_text(&c, CHART_FONT_REGULAR, L.fs_sub, spec->subtitle,
								avail, buf, sizeof(buf)));
	}
	if (nlegend)
		draw_legend(&c, &L, legend, nlegend,
					L.x1 - legend_width(&c, &L, legend, nlegend), legend_y);

	if (L.right.used)
		snprintf(meta, sizeof(meta), "%d %d %d %d %.6f %.6f %.17g %.17g %.17g %.17g",
				 L.x0, L.y0, L.x1, L.y1, L.t0, L.t1, L.left.lo, L.left.hi,
				 L.right.lo, L.right.hi);
	else
		snprintf(meta, sizeof(meta), "%d %d %d %d %.6f %.6f %.17g %.17g",
				 L.x0, L.y0, L.x1, L.y1, L.t0, L.t1,
				 L.left.used ? L.left.lo : 0.0, L.left.used ? L.left.hi : 1.0);

	xticks[0] = '\0';
	for (i = 0; i < tt.n; i++)
	{
		size_t		used = strlen(xticks);

		snprintf(xticks + used, sizeof(xticks) - used, "%s%.0f %s",
				 i ? "|" : "", tt.v[i], tt.label[i]);
	}

	value_ticks_text(&L.left, yticks[0], sizeof(yticks[0]));
	value_ticks_text(&L.right, yticks[1], sizeof(yticks[1]));

	png = chart_png_encode(&c, keys, values, L.right.used ? 4 : 3, len);
	if (png == NULL)
		snprintf(errbuf, errlen, "out of memory while encoding a %dx%d PNG", w, h);

done:
	chart_canvas_release(&c);
	return png;
}
