/*
 * chart.c
 *		Canvas and antialiased primitives for metric_anomaly's charts.
 *
 * libgd holds the pixels; everything is drawn here straight into the
 * truecolor rows, because libgd's per-pixel primitives are slow (a
 * full-canvas rectangle takes milliseconds) and its antialiased lines have
 * integer end points.  Strokes are accumulated in a coverage mask and
 * composited once, so polyline joints are not blended twice.  Text is
 * chart_text.c's.  Pure C: see chart.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "chart.h"
#include "chart_blend.h"

/*
 * The canvas of the last chart, kept for the next one of the same size
 * when it has at most SPARE_MAX_PIXELS pixels (12 MB with its mask): a
 * 1200 x 600 canvas allocated afresh costs a chart 5% of its time in
 * calloc's zeroing and malloc/free of 600 rows (perf, render_metric_chart
 * in the server).  Its mask is left clear by chart_canvas_release.
 */
#define SPARE_MAX_PIXELS	(2400 * 1200)

static gdImagePtr spare_im;
static unsigned char *spare_mask;

/*
 * Creates a canvas filled with background (CHART_NO_BACKGROUND: left as it
 * is); false when out of memory.
 */
bool
chart_canvas_init(ChartCanvas *c, int width, int height, ChartColor background)
{
	memset(c, 0, sizeof(*c));
	if (spare_im && gdImageSX(spare_im) == width && gdImageSY(spare_im) == height)
	{
		c->im = spare_im;
		c->mask = spare_mask;
		spare_im = NULL;
		spare_mask = NULL;
	}
	else
	{
		c->im = gdImageCreateTrueColor(width, height);
		if (c->im == NULL)
			return false;
		c->mask = calloc((size_t) width * height + 16, 1);
		if (c->mask == NULL)
		{
			gdImageDestroy(c->im);
			c->im = NULL;
			return false;
		}
	}
	c->width = width;
	c->height = height;
	c->mask_x0 = width;
	c->mask_y0 = height;
	c->mask_x1 = -1;
	c->mask_y1 = -1;
	gdImageAlphaBlending(c->im, 1);
	gdImageSaveAlpha(c->im, 0);
	c->ttf = chart_text_available();
	if (background != CHART_NO_BACKGROUND)
		chart_fill_rect(c, 0, 0, width - 1, height - 1, background, 255);
	return true;
}

/*
 * Frees what chart_canvas_init allocated, or keeps it as the spare canvas
 * (see SPARE_MAX_PIXELS) with its mask cleared; safe to call twice.
 */
void
chart_canvas_release(ChartCanvas *c)
{
	if (c->im && c->mask && (size_t) c->width * c->height <= SPARE_MAX_PIXELS)
	{
		int			y;

		/* strokes added but never finished: clear their part of the mask */
		for (y = c->mask_y0; y <= c->mask_y1; y++)
			memset(c->mask + (size_t) y * c->width + c->mask_x0, 0,
				   c->mask_x1 - c->mask_x0 + 1);
		if (spare_im)
			gdImageDestroy(spare_im);
		free(spare_mask);
		spare_im = c->im;
		spare_mask = c->mask;
	}
	else
	{
		if (c->im)
			gdImageDestroy(c->im);
		free(c->mask);
	}
	c->im = NULL;
	c->mask = NULL;
}

/* Fills the inclusive rectangle, clipped, with color at alpha 0..255. */
void
chart_fill_rect(ChartCanvas *c, int x0, int y0, int x1, int y1,
				ChartColor color, int alpha)
{
	int			x,
				y;

	if (x0 > x1)
	{
		x = x0;
		x0 = x1;
		x1 = x;
	}
	if (y0 > y1)
	{
		y = y0;
		y0 = y1;
		y1 = y;
	}
	if (x0 < 0)
		x0 = 0;
	if (y0 < 0)
		y0 = 0;
	if (x1 >= c->width)
		x1 = c->width - 1;
	if (y1 >= c->height)
		y1 = c->height - 1;
	for (y = y0; y <= y1; y++)
	{
		int		   *row = c->im->tpixels[y];

		if (alpha >= 255 && y > y0)
			memcpy(row + x0, c->im->tpixels[y0] + x0, sizeof(int) * (x1 - x0 + 1));
		else if (alpha >= 255)
			for (x = x0; x <= x1; x++)
				row[x] = (int) (color & 0xffffff);
		else
			for (x = x0; x <= x1; x++)
				blend_pixel(&row[x], color, alpha);
	}
}

/* Draws a crisp one-pixel horizontal line, dashed when dash_on > 0. */
void
chart_hline(ChartCanvas *c, int x0, int x1, int y, ChartColor color,
			int dash_on, int dash_off)
{
	int			x;

	if (y < 0 || y >= c->height)
		return;
	if (x0 < 0)
		x0 = 0;
	if (x1 >= c->width)
		x1 = c->width - 1;
	for (x = x0; x <= x1; x++)
		if (dash_on <= 0 || (x - x0) % (dash_on + dash_off) < dash_on)
			c->im->tpixels[y][x] = (int) (color & 0xffffff);
}

/* Draws a crisp one-pixel vertical line, dashed when dash_on > 0. */
void
chart_vline(ChartCanvas *c, int x, int y0, int y1, ChartColor color,
			int dash_on, int dash_off)
{
	int			y;

	if (x < 0 || x >= c->width)
		return;
	if (y0 < 0)
		y0 = 0;
	if (y1 >= c->height)
		y1 = c->height - 1;
	for (y = y0; y <= y1; y++)
		if (dash_on <= 0 || (y - y0) % (dash_on + dash_off) < dash_on)
			c->im->tpixels[y][x] = (int) (color & 0xffffff);
}

/*
 * One pixel column of a band: rows yt..yb, the top one at alpha at, the
 * bottom one at ab and those between at the band's alpha (yt == yb: one
 * pixel at at).
 */
typedef struct BandColumn
{
	int			col;
	int			yt;
	int			yb;
	int			at;
	int			ab;
} BandColumn;

#define BAND_BATCH	64			/* columns shaded together */

/*
 * Blends color at alpha over rows y0 .. y1 - 1 of column col; most pixels
 * repeat the one above (the background), so the last blend is reused.
 */
static void
band_rows(int **rows, int col, int y0, int y1, ChartColor color, int alpha)
{
	int			memo_src = -1,
				memo_dst = 0,
				y;

	for (y = y0; y < y1; y++)
	{
		int		   *px = &rows[y][col];

		if (*px != memo_src)
		{
			memo_src = *px;
			blend_pixel(px, color, alpha);
			memo_dst = *px;
		}
		else
			*px = memo_dst;
	}
}

/*
 * Shades the columns of a batch (ascending).  Four adjacent columns share
 * the rows all four cover, which are blended four pixels at a time (SSE2,
 * exactly as blend_pixel: the band was 7% of render_metric_chart's time,
 * one pixel per row pointer); the rest pixel by pixel.
 */
static void
band_flush(ChartCanvas *c, const BandColumn *b, int n, ChartColor color,
		   int alpha)
{
	int		  **rows = c->im->tpixels;
	int			k = 0;
#ifdef __SSE2__
	const __m128i zero = _mm_setzero_si128();
	const __m128i c128 = _mm_set1_epi16(128);
	const __m128i na = _mm_set1_epi16((short) (255 - alpha));
	__m128i		ca = _mm_mullo_epi16(_mm_unpacklo_epi8(_mm_set1_epi32((int) (color & 0xffffff)),
													   zero),
									 _mm_set1_epi16((short) alpha));
#endif

	while (k < n)
	{
		int			top = INT32_MIN,
					bot = INT32_MAX,
					j,
					m = 1;

#ifdef __SSE2__
		if (k + 4 <= n && b[k + 3].col == b[k].col + 3 && alpha < 255)
		{
			for (j = k; j < k + 4; j++)
			{
				if (b[j].yt + 1 > top)
					top = b[j].yt + 1;
				if (b[j].yb < bot)
					bot = b[j].yb;
			}
			if (top < bot)
			{
				__m128i		memo_src = _mm_set1_epi32(-1),
							memo_dst = zero;
				int			y;

				for (y = top; y < bot; y++)
				{
					__m128i    *px = (__m128i *) (rows[y] + b[k].col);
					__m128i		p = _mm_loadu_si128(px);

					if (_mm_movemask_epi8(_mm_cmpeq_epi32(p, memo_src)) != 0xffff)
					{
						__m128i		lo = _mm_add_epi16(_mm_mullo_epi16(_mm_unpacklo_epi8(p, zero), na), ca),
									hi = _mm_add_epi16(_mm_mullo_epi16(_mm_unpackhi_epi8(p, zero), na), ca);

						/* DIV255 on unsigned 16-bit lanes */
						lo = _mm_add_epi16(lo, c128);
						lo = _mm_srli_epi16(_mm_add_epi16(lo, _mm_srli_epi16(lo, 8)), 8);
						hi = _mm_add_epi16(hi, c128);
						hi = _mm_srli_epi16(_mm_add_epi16(hi, _mm_srli_epi16(hi, 8)), 8);
						memo_src = p;
						memo_dst = _mm_packus_epi16(lo, hi);
					}
					_mm_storeu_si128(px, memo_dst);
				}
				m = 4;
			}
		}
#endif
		for (j = k; j < k + m; j++)
		{
			const BandColumn *bc = &b[j];

			blend_pixel(&rows[bc->yt][bc->col], color, bc->at);
			if (bc->yb == bc->yt)
				continue;
			blend_pixel(&rows[bc->yb][bc->col], color, bc->ab);
			if (m == 4)
			{
				/* the rows above and below those shaded four at a time */
				band_rows(rows, bc->col, bc->yt + 1, top, color, alpha);
				band_rows(rows, bc->col, bot, bc->yb, color, alpha);
			}
			else
				band_rows(rows, bc->col, bc->yt + 1, bc->yb, color, alpha);
		}
		k += m;
	}
}

/*
 * Shades the area between two piecewise-linear curves given at increasing x
 * (y downwards, pixel space), clipped to clip_y0..clip_y1.  Each pixel
 * column is filled exactly once, so a translucent color blends evenly; the
 * top and bottom pixel of a span get fractional coverage.
 */
void
chart_fill_between(ChartCanvas *c, const double *x, const double *ylo,
				   const double *yhi, int n, int clip_y0, int clip_y1,
				   ChartColor color, int alpha)
{
	BandColumn	batch[BAND_BATCH];
	int			nbatch = 0;
	int			i;
	int			next_col = INT32_MIN;

	if (clip_y0 < 0)
		clip_y0 = 0;
	if (clip_y1 >= c->height)
		clip_y1 = c->height - 1;

	for (i = 0; i + 1 < n; i++)
	{
		double		xa = x[i],
					xb = x[i + 1];
		int			col,
					col_end;

		if (!(xb > xa) || isnan(ylo[i]) || isnan(ylo[i + 1]) ||
			isnan(yhi[i]) || isnan(yhi[i + 1]))
			continue;
		col = (int) ceil(xa - 0.5);
		col_end = (int) ceil(xb - 0.5);
		if (col < next_col)
			col = next_col;
		for (; col < col_end; col++)
		{
			double		f,
						top,
						bot;
			BandColumn *bc;

			if (col < 0 || col >= c->width)
				continue;
			f = (col + 0.5 - xa) / (xb - xa);
			if (f < 0)
				f = 0;
			if (f > 1)
				f = 1;
			top = yhi[i] + (yhi[i + 1] - yhi[i]) * f;
			bot = ylo[i] + (ylo[i + 1] - ylo[i]) * f;
			if (top > bot)
			{
				double		t = top;

				top = bot;
				bot = t;
			}
			if (top < clip_y0)
				top = clip_y0;
			if (bot > clip_y1 + 1)
				bot = clip_y1 + 1;
			if (bot <= top)
				continue;
			bc = &batch[nbatch++];
			bc->col = col;
			bc->yt = (int) floor(top);
			bc->yb = (int) ceil(bot) - 1;
			if (bc->yt == bc->yb)
				bc->at = (int) (alpha * (bot - top) + 0.5);
			else
			{
				bc->at = (int) (alpha * ((bc->yt + 1) - top) + 0.5);
				bc->ab = (int) (alpha * (bot - bc->yb) + 0.5);
			}
			if (nbatch == BAND_BATCH)
			{
				band_flush(c, batch, nbatch, color, alpha);
				nbatch = 0;
			}
		}
		next_col = col_end;
	}
	band_flush(c, batch, nbatch, color, alpha);
}

/*
 * floor and ceil without libm.  Values beyond +-1e9 (and NaN, read as
 * -1e9) are clamped there first: a segment whose ends lie around 1e300
 * gives infinite crossings, undefined to convert to int (make fuzz); any
 * such pixel is off the canvas, which callers clip to.
 */
#define PIXEL_LIMIT 1000000000

static inline int
ifloor(double v)
{
	int			i;

	if (!(v > -PIXEL_LIMIT))
		return -PIXEL_LIMIT;
	if (v > PIXEL_LIMIT)
		return PIXEL_LIMIT;
	i = (int) v;
	return i - (v < i);
}

static inline int
iceil(double v)
{
	int			i;

	if (!(v > -PIXEL_LIMIT))
		return -PIXEL_LIMIT;
	if (v > PIXEL_LIMIT)
		return PIXEL_LIMIT;
	i = (int) v;
	return i + (v > i);
}

/* The same, for v known to lie within +-PIXEL_LIMIT. */
static inline int
ifloor_in(double v)
{
	int			i = (int) v;

	return i - (v < i);
}

static inline int
iceil_in(double v)
{
	int			i = (int) v;

	return i + (v > i);
}

#define COV_TABLE_SIZE 1024
static unsigned char cov_table[COV_TABLE_SIZE + 1];
static double cov_table_r = -1;

/*
 * Adds the coverage of pixels rx0..rx1 of a row clear of a segment's end
 * caps, where every pixel within reach has its nearest point inside the
 * segment: coverage falls off with the horizontal distance u to the line's
 * crossing of the row (u0 at rx0), scaled by perp to a perpendicular one.
 */
static inline void
stroke_row_clear(unsigned char *mrow, int rx0, int rx1, double u0, double r,
				 double perp, float r255, float p255)
{
	int			px;

#ifdef __SSE2__
	/*
	 * Four pixels at a time; those past rx1 are out of reach and get 0,
	 * which the max leaves alone (the mask has slack after its last row).
	 * r255 and p255 are (float) (r * 255 + 0.5) and (float) (perp * 255),
	 * converted once per segment.
	 */
	__m128		uv = _mm_add_ps(_mm_set1_ps((float) u0),
								_mm_setr_ps(0.0f, 1.0f, 2.0f, 3.0f));
	__m128		r255v = _mm_set1_ps(r255);
	__m128		pv = _mm_set1_ps(p255);
	__m128		absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));

	for (px = rx0; px <= rx1; px += 4)
	{
		__m128i		a = _mm_cvttps_epi32(_mm_sub_ps(r255v,
													_mm_mul_ps(_mm_and_ps(uv, absmask), pv)));
		uint32_t	m4;

		a = _mm_packs_epi32(a, a);
		a = _mm_packus_epi16(a, a); /* clamped to 0..255 */
		memcpy(&m4, mrow + px, 4);
		m4 = (uint32_t) _mm_cvtsi128_si32(_mm_max_epu8(_mm_cvtsi32_si128((int) m4), a));
		memcpy(mrow + px, &m4, 4);
		uv = _mm_add_ps(uv, _mm_set1_ps(4.0f));
	}
#else
	double		u = u0;

	for (px = rx0; px <= rx1; px++, u += 1.0)
	{
		double		cov = r - fabs(u) * perp;
		int			a = cov >= 1.0 ? 255 : cov <= 0.0 ? 0 :
			(int) (cov * 255 + 0.5);

		if (a > mrow[px])
			mrow[px] = (unsigned char) a;
	}
#endif
}

/*
 * A pixel bound as an int in [-1, size]: a coordinate far off the canvas
 * (1e59 from a series' extreme value, make fuzz found) would be undefined
 * to convert; -1 and size are off the canvas on either side.
 */
static inline int
clamp_to_canvas(double v, int size)
{
	if (!(v > -1))
		return -1;
	if (v > size)
		return size;
	return (int) v;
}

/*
 * Adds an antialiased segment of the given width (pixels) to the stroke
 * mask, as a capsule; dash, when not NULL and on > 0, cuts it into dashes
 * and carries the phase to the next segment.
 */
void
chart_stroke_segment(ChartCanvas *c, double x0, double y0, double x1,
					 double y1, double width, ChartDash *dash)
{
	double		hw = width / 2.0;
	double		dx = x1 - x0,
				dy = y1 - y0;
	double		len2 = dx * dx + dy * dy;
	double		len = sqrt(len2);
	double		period = 0.0,
				phase = 0.0,
				r,
				r2,
				inner2,
				inv_len2,
				inv_len,
				cov_scale,
				slope,
				half,
				perp,
				inv_dy,
				tmargin,
				tstep,
				dpstep,
				tbase,
				dpbase,
				xc,
				ey0,
				ey1;
	bool		steep,
				fast,
				has_len,
				dashed,
				in_range;
	float		r255,
				p255;
	int			bx0,
				by0,
				bx1,
				by1,
				px,
				py;

	if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1))
		return;
	if (dash && dash->on > 0)
	{
		period = dash->on + dash->off;
		phase = dash->phase;
		dash->phase = fmod(dash->phase + len, period);
	}

	bx0 = clamp_to_canvas(floor(fmin(x0, x1) - hw - 1), c->width);
	bx1 = clamp_to_canvas(ceil(fmax(x0, x1) + hw + 1), c->width);
	by0 = clamp_to_canvas(floor(fmin(y0, y1) - hw - 1), c->height);
	by1 = clamp_to_canvas(ceil(fmax(y0, y1) + hw + 1), c->height);
	if (bx0 < 0)
		bx0 = 0;
	if (by0 < 0)
		by0 = 0;
	if (bx1 >= c->width)
		bx1 = c->width - 1;
	if (by1 >= c->height)
		by1 = c->height - 1;
	if (bx0 > bx1 || by0 > by1)
		return;

	r = hw + 0.5;
	r2 = r * r;
	inner2 = (r > 1.0) ? (r - 1.0) * (r - 1.0) : 0.0;
	if (r != cov_table_r)
	{
		/* coverage as a function of the squared distance, sampled */
		int			i;

		for (i = 0; i <= COV_TABLE_SIZE; i++)
		{
			double		cov = r - sqrt(r2 * i / COV_TABLE_SIZE);

			cov_table[i] = (unsigned char) (cov >= 1.0 ? 255 : cov <= 0 ? 0 : (int) (cov * 255 + 0.5));
		}
		cov_table_r = r;
	}
	cov_scale = COV_TABLE_SIZE / r2;
	inv_len2 = len2 > 0 ? 1.0 / len2 : 0.0;
	inv_len = len > 0 ? 1.0 / len : 0.0;
	has_len = len > 0;
	dashed = period > 0;
	steep = fabs(dy) > 0.5;
	slope = steep ? dx / dy : 0.0;
	half = steep ? r * len / fabs(dy) : 0.0;
	/*
	 * Data lines are mostly steep segments a pixel or less apart.  In the
	 * rows of a solid steep segment that are clear of its end caps, every
	 * pixel within reach has its nearest point inside the segment: see the
	 * short cut below.
	 */
	fast = steep && has_len && !dashed;
	perp = steep ? fabs(dy) / len : 0.0;
	inv_dy = steep ? 1.0 / dy : 0.0;
	tmargin = steep ? r * fabs(dx) / (fabs(dy) * len) : 0.0;
	/*
	 * Along a row, t (position along the segment) and the signed distance
	 * to the segment's line are linear in x; from row to row they, and the
	 * line's crossing xc, move by constant steps.  Past either end of the
	 * segment the distance is to that end point.
	 */
	tstep = dx * inv_len2;
	dpstep = dy * inv_len;
	r255 = (float) (r * 255 + 0.5);
	p255 = (float) (perp * 255);
	{
		double		cy0 = by0 + 0.5;

		tbase = ((0.5 - x0) * dx + (cy0 - y0) * dy) * inv_len2;
		dpbase = ((0.5 - x0) * dy - (cy0 - y0) * dx) * inv_len;
		xc = x0 + (cy0 - y0) * slope;
		ey0 = cy0 - y0;
		ey1 = cy0 - y1;
	}

	/*
	 * The row interval's ends need no clamping when the crossing stays far
	 * inside +-PIXEL_LIMIT over the rows (ordinary charts: it is on the
	 * canvas), which saves a chart 4% of the stroke's instructions.
	 */
	{
		double		xc_end = xc + (by1 - by0) * slope;

		in_range = fabs(xc) + half < PIXEL_LIMIT / 2 &&
			fabs(xc_end) + half < PIXEL_LIMIT / 2;
	}
	for (py = by0; py <= by1;
		 py++, tbase += dy * inv_len2, dpbase -= dx * inv_len, xc += slope,
		 ey0 += 1.0, ey1 += 1.0)
	{
		unsigned char *mrow = c->mask + (size_t) py * c->width;
		int			rx0 = bx0,
					rx1 = bx1;
		double		t,
					dp;

		if (steep)
		{
			/*
			 * Pixel centres within r of the segment lie within r of the
			 * infinite line, i.e. within this interval of the row.
			 */
			int			lo = in_range ? iceil_in(xc - half - 0.5) : iceil(xc - half - 0.5),
						hi = in_range ? ifloor_in(xc + half - 0.5) : ifloor(xc + half - 0.5);

			if (lo > rx0)
				rx0 = lo;
			if (hi < rx1)
				rx1 = hi;
		}
		/* rows clear of the end caps: the crossing is tmargin inside */
		if (fast && ey0 * inv_dy >= tmargin && ey0 * inv_dy <= 1.0 - tmargin)
		{
			stroke_row_clear(mrow, rx0, rx1, rx0 + 0.5 - xc, r, perp, r255, p255);
			continue;
		}
		t = tbase + rx0 * tstep;
		dp = dpbase + rx0 * dpstep;
		for (px = rx0; px <= rx1; px++, t += tstep, dp += dpstep)
		{
			double		d2;
			int			a;

			if (t >= 0 && t <= 1 && has_len)
				d2 = dp * dp;
			else if (t < 0.5)
			{
				double		ex = px + 0.5 - x0;

				d2 = ex * ex + ey0 * ey0;
			}
			else
			{
				double		ex = px + 0.5 - x1;

				d2 = ex * ex + ey1 * ey1;
			}
			if (d2 >= r2)
				continue;
			if (dashed &&
				fmod(phase + (t < 0 ? 0 : t > 1 ? 1 : t) * len, period) >= dash->on)
				continue;
			a = d2 <= inner2 ? 255 : cov_table[(int) (d2 * cov_scale)];
			if (a > mrow[px])
				mrow[px] = (unsigned char) a;
		}
	}
	if (bx0 < c->mask_x0)
		c->mask_x0 = bx0;
	if (by0 < c->mask_y0)
		c->mask_y0 = by0;
	if (bx1 > c->mask_x1)
		c->mask_x1 = bx1;
	if (by1 > c->mask_y1)
		c->mask_y1 = by1;
}

#ifdef __SSE2__
/*
 * Blends color over four pixels with the four coverages at m, exactly as
 * blend_pixel does (a coverage of 0 leaves a pixel as it is).
 */
static inline void
blend4_sse2(int *px, const unsigned char *m, __m128i color16)
{
	const __m128i zero = _mm_setzero_si128();
	const __m128i c255 = _mm_set1_epi16(255);
	const __m128i c128 = _mm_set1_epi16(128);
	__m128i		p = _mm_loadu_si128((const __m128i *) px);
	__m128i		a;
	__m128i		alo,
				ahi,
				lo,
				hi;
	uint32_t	a4;

	memcpy(&a4, m, 4);
	a = _mm_cvtsi32_si128((int) a4);
	a = _mm_unpacklo_epi8(a, a);
	a = _mm_unpacklo_epi16(a, a);	/* each pixel's coverage in its 4 bytes */
	alo = _mm_unpacklo_epi8(a, zero);
	ahi = _mm_unpackhi_epi8(a, zero);
	lo = _mm_add_epi16(_mm_mullo_epi16(_mm_unpacklo_epi8(p, zero), _mm_sub_epi16(c255, alo)),
					   _mm_mullo_epi16(color16, alo));
	hi = _mm_add_epi16(_mm_mullo_epi16(_mm_unpackhi_epi8(p, zero), _mm_sub_epi16(c255, ahi)),
					   _mm_mullo_epi16(color16, ahi));
	/* DIV255 on unsigned 16-bit lanes */
	lo = _mm_add_epi16(lo, c128);
	lo = _mm_srli_epi16(_mm_add_epi16(lo, _mm_srli_epi16(lo, 8)), 8);
	hi = _mm_add_epi16(hi, c128);
	hi = _mm_srli_epi16(_mm_add_epi16(hi, _mm_srli_epi16(hi, 8)), 8);
	_mm_storeu_si128((__m128i *) px, _mm_packus_epi16(lo, hi));
}
#endif

/* Composites the accumulated stroke mask in color and clears it. */
void
chart_stroke_finish(ChartCanvas *c, ChartColor color)
{
	int			x,
				y;
#ifdef __SSE2__
	const __m128i zero = _mm_setzero_si128();
	__m128i		color16 = _mm_unpacklo_epi8(_mm_set1_epi32((int) (color & 0xffffff)),
											zero);
#endif

	for (y = c->mask_y0; y <= c->mask_y1; y++)
	{
		unsigned char *mrow = c->mask + (size_t) y * c->width;
		int		   *row = c->im->tpixels[y];

		x = c->mask_x0;
#ifdef __SSE2__
		/* sixteen mask bytes at a time; only groups of four with ink blend */
		for (; x + 16 <= c->mask_x1 + 1; x += 16)
		{
			__m128i		m = _mm_loadu_si128((const __m128i *) (mrow + x));
			int			ink = ~_mm_movemask_epi8(_mm_cmpeq_epi8(m, zero)) & 0xffff;
			int			g;

			if (ink == 0)
				continue;
			for (g = 0; g < 4; g++)
				if (ink & (0xf << (4 * g)))
					blend4_sse2(row + x + 4 * g, mrow + x + 4 * g, color16);
			_mm_storeu_si128((__m128i *) (mrow + x), zero);
		}
#endif
		while (x <= c->mask_x1)
		{
			uint64_t	word;

			/* skip eight empty mask bytes at a time */
			if (x + 8 <= c->mask_x1 + 1)
			{
				memcpy(&word, mrow + x, 8);
				if (word == 0)
				{
					x += 8;
					continue;
				}
			}
			if (mrow[x])
			{
				blend_pixel(&row[x], color, mrow[x]);
				mrow[x] = 0;
			}
			x++;
		}
	}
	c->mask_x0 = c->width;
	c->mask_y0 = c->height;
	c->mask_x1 = -1;
	c->mask_y1 = -1;
}

/* Draws an antialiased filled disc. */
void
chart_disc(ChartCanvas *c, double cx, double cy, double r, ChartColor color)
{
	int			x0,
				x1,
				y0,
				y1;
	int			x,
				y;
	double		inner2,
				outer2;

	/*
	 * Off the canvas, or not a number: nothing to draw.  Checked before the
	 * conversions to int, which are undefined for such values (make fuzz).
	 */
	if (!(cx + r + 1 >= 0 && cx - r - 1 < c->width &&
		  cy + r + 1 >= 0 && cy - r - 1 < c->height))
		return;
	x0 = (int) floor(cx - r - 1);
	x1 = (int) ceil(cx + r + 1);
	y0 = (int) floor(cy - r - 1);
	y1 = (int) ceil(cy + r + 1);
	if (x0 < 0)
		x0 = 0;
	if (y0 < 0)
		y0 = 0;
	if (x1 >= c->width)
		x1 = c->width - 1;
	if (y1 >= c->height)
		y1 = c->height - 1;
	/*
	 * Only the rim needs the square root: pixels whose squared distance is
	 * safely (a relative 1e-9, far above rounding) inside r - 0.5 are
	 * covered whole, those safely beyond r + 0.5 not at all, exactly as
	 * the root would tell.  The roots were most of the markers' time.
	 */
	inner2 = r - 0.5 >= 0.01 ? (r - 0.5) * (r - 0.5) * (1 - 1e-9) : -1;
	outer2 = (r + 0.5) * (r + 0.5) * (1 + 1e-9);
	for (y = y0; y <= y1; y++)
		for (x = x0; x <= x1; x++)
		{
			double		ddx = x + 0.5 - cx,
						ddy = y + 0.5 - cy;
			double		d2 = ddx * ddx + ddy * ddy;
			double		cov;

			if (d2 <= inner2)
			{
				c->im->tpixels[y][x] = (int) (color & 0xffffff);
				continue;
			}
			if (d2 >= outer2)
				continue;
			cov = r + 0.5 - sqrt(d2);
			if (cov > 0)
				blend_pixel(&c->im->tpixels[y][x], color,
							cov >= 1 ? 255 : (int) (cov * 255 + 0.5));
		}
}
