/*
 * chart.c
 *		Canvas, antialiased primitives and text for metric_anomaly's charts.
 *
 * libgd holds the pixels and rasterises TrueType glyphs; everything else is
 * drawn here straight into the truecolor rows, because libgd's per-pixel
 * primitives are slow (a full-canvas rectangle takes milliseconds) and its
 * antialiased lines have integer end points.  Strokes are accumulated in a
 * coverage mask and composited once, so polyline joints are not blended
 * twice.  Glyphs are rendered once per face and size through libgd and
 * cached.  Each character comes from the first font of a fallback list that
 * has it: fontconfig's sorted list for "DejaVu Sans" (DejaVu first, then the
 * other installed fonts by closeness, e.g. WenQuanYi Micro Hei or Noto Sans
 * CJK for Chinese), so a string mixing scripts ("注册 signups ✓") draws every
 * glyph.  libgd's built-in bitmap fonts are the fallback when no TrueType
 * font works.  Pure C: see chart.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <fontconfig/fontconfig.h>
#include <gdfontmb.h>
#include <gdfonts.h>

#include "chart.h"

#define CHART_FONT_NAME_REGULAR		"DejaVu Sans"
#define CHART_FONT_NAME_BOLD		"DejaVu Sans:bold"

#define CHART_GLYPH_FIRST	32
#define CHART_GLYPH_LAST	126
#define CHART_GLYPH_COUNT	(CHART_GLYPH_LAST - CHART_GLYPH_FIRST + 1)
#define CHART_MAX_FACES		24

/*
 * Fonts of a fallback list kept per style: fontconfig's trimmed sort lists
 * only fonts that add coverage (15 on a Debian 12 machine with DejaVu,
 * WenQuanYi and matplotlib's fonts, WenQuanYi fifth); 32 covers any script
 * a chart is likely to show.  A lookup tries them in order, at a glyph's
 * first use only.
 */
#define CHART_MAX_FALLBACKS	32

/*
 * Non-ASCII glyphs cached per face: an open-addressed table, emptied when
 * it is three quarters full (about 70 KB of coverage at 10 points), so the
 * cache stays bounded whatever the texts.
 */
#define CHART_WIDE_SLOTS	1024
#define CHART_WIDE_LIMIT	(CHART_WIDE_SLOTS * 3 / 4)

typedef struct ChartGlyph
{
	uint32_t	cp;				/* code point (wide table only) */
	bool		loaded;
	short		left;			/* bitmap offset from the pen position */
	short		top;			/* bitmap offset from the baseline (< 0 up) */
	short		w;
	short		h;
	short		advance;
	unsigned char *cov;			/* w * h coverage, 0..255 */
} ChartGlyph;

typedef struct ChartFace
{
	ChartFont	font;
	int			size_q;			/* size in quarter points */
	int			ascent;
	int			descent;
	int			hh_right[CHART_MAX_FALLBACKS];	/* right ink edge of "HH"
												 * per fallback font; 0 not
												 * yet measured */
	ChartGlyph	glyph[CHART_GLYPH_COUNT];
	ChartGlyph *wide;			/* CHART_WIDE_SLOTS, or NULL */
	int			nwide;
} ChartFace;

/* One font of a fallback list: its file and the characters it has. */
typedef struct ChartFallback
{
	char	   *path;
	FcCharSet  *charset;
} ChartFallback;

static ChartFace *faces[CHART_MAX_FACES];
static int	nfaces = 0;
static int	ttf_state = 0;		/* 0 unknown, 1 works, -1 does not */
static ChartFallback fallbacks[2][CHART_MAX_FALLBACKS];	/* per ChartFont */
static int	nfallbacks[2];

#define RGB_R(c) (((c) >> 16) & 0xff)
#define RGB_G(c) (((c) >> 8) & 0xff)
#define RGB_B(c) ((c) & 0xff)

/* x / 255 rounded, for 0 <= x <= 255 * 255 */
#define DIV255(x) (((x) + 128 + (((x) + 128) >> 8)) >> 8)

/* Blends color over the pixel at px with alpha 0..255. */
static inline void
blend_pixel(int *px, ChartColor color, int a)
{
	int			p = *px;
	int			na = 255 - a;
	int			r,
				g,
				b;

	if (a >= 255)
	{
		*px = (int) (color & 0xffffff);
		return;
	}
	r = DIV255(((p >> 16) & 0xff) * na + (int) RGB_R(color) * a);
	g = DIV255(((p >> 8) & 0xff) * na + (int) RGB_G(color) * a);
	b = DIV255((p & 0xff) * na + (int) RGB_B(color) * a);
	*px = (r << 16) | (g << 8) | b;
}

static const char *
font_name(ChartFont font)
{
	return font == CHART_FONT_BOLD ? CHART_FONT_NAME_BOLD : CHART_FONT_NAME_REGULAR;
}

/*
 * Fills font's fallback list from fontconfig: the fonts it sorts for the
 * font's pattern, trimmed to those adding coverage.  Only face 0 of a file
 * is usable (libgd opens face 0), so other faces of collections are
 * skipped.  An empty list (no fontconfig, no fonts) leaves text to libgd's
 * pattern matching.
 */
static void
load_fallbacks(ChartFont font)
{
	FcPattern  *pat = FcNameParse((const FcChar8 *) font_name(font));
	FcFontSet  *set = NULL;
	FcResult	res;
	int			i;

	if (pat == NULL)
		return;
	FcConfigSubstitute(NULL, pat, FcMatchPattern);
	FcDefaultSubstitute(pat);
	set = FcFontSort(NULL, pat, FcTrue, NULL, &res);
	for (i = 0; set && i < set->nfont && nfallbacks[font] < CHART_MAX_FALLBACKS; i++)
	{
		FcChar8    *file;
		FcCharSet  *cs;
		int			index = 0;
		ChartFallback *fb = &fallbacks[font][nfallbacks[font]];

		if (FcPatternGetString(set->fonts[i], FC_FILE, 0, &file) != FcResultMatch ||
			FcPatternGetCharSet(set->fonts[i], FC_CHARSET, 0, &cs) != FcResultMatch)
			continue;
		(void) FcPatternGetInteger(set->fonts[i], FC_INDEX, 0, &index);
		if (index != 0)
			continue;
		fb->path = strdup((const char *) file);
		fb->charset = FcCharSetCopy(cs);
		if (fb->path == NULL || fb->charset == NULL)
		{
			free(fb->path);
			if (fb->charset)
				FcCharSetDestroy(fb->charset);
			break;
		}
		nfallbacks[font]++;
	}
	if (set)
		FcFontSetDestroy(set);
	FcPatternDestroy(pat);
}

/*
 * Index in font's fallback list of the first font that has code point cp;
 * 0 (the primary font, whose missing-glyph box is drawn) when none has it.
 */
static int
fallback_for(ChartFont font, uint32_t cp)
{
	int			i;

	for (i = 0; i < nfallbacks[font]; i++)
		if (FcCharSetHasChar(fallbacks[font][i].charset, cp))
			return i;
	return 0;
}

/*
 * Renders s (UTF-8) with the fallback font fb of font through libgd, or
 * measures it when im is NULL; NULL on success, libgd's message otherwise.
 * Without a fallback list, font's fontconfig pattern is used.
 */
static char *
ft_string(gdImagePtr im, int *brect, int fg, ChartFont font, int fb,
		  double size, double angle, int x, int y, const char *s)
{
	gdFTStringExtra ex = {0};

	if (nfallbacks[font] == 0)
		return gdImageStringFT(im, brect, fg, (char *) font_name(font), size,
							   angle, x, y, (char *) s);
	ex.flags = gdFTEX_FONTPATHNAME;
	return gdImageStringFTEx(im, brect, fg, fallbacks[font][fb].path, size,
							 angle, x, y, (char *) s, &ex);
}

/*
 * Tells whether TrueType text works in this process, trying it once.
 */
static bool
ttf_available(void)
{
	if (ttf_state == 0)
	{
		int			brect[8];

		gdFTUseFontConfig(1);
		if (FcInit())
		{
			load_fallbacks(CHART_FONT_REGULAR);
			load_fallbacks(CHART_FONT_BOLD);
		}
		ttf_state = ft_string(NULL, brect, 0, CHART_FONT_REGULAR, 0, 10.0,
							  0.0, 0, 0, "Hg") == NULL ? 1 : -1;
	}
	return ttf_state > 0;
}

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
	c->ttf = ttf_available();
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

/* ---------------------------------------------------------------------
 * Text
 * ---------------------------------------------------------------------
 */


/*
 * Decodes the UTF-8 character at *s and advances past it; a malformed or
 * truncated sequence gives U+FFFD and advances one byte, so every string
 * draws something and the loop always ends.
 */
static uint32_t
next_cp(const char **s)
{
	const unsigned char *p = (const unsigned char *) *s;
	uint32_t	cp;
	int			n,
				i;

	if (p[0] < 0x80)
	{
		*s += 1;
		return p[0];
	}
	if ((p[0] & 0xe0) == 0xc0)
		cp = p[0] & 0x1f, n = 1;
	else if ((p[0] & 0xf0) == 0xe0)
		cp = p[0] & 0x0f, n = 2;
	else if ((p[0] & 0xf8) == 0xf0)
		cp = p[0] & 0x07, n = 3;
	else
	{
		*s += 1;
		return 0xfffd;
	}
	for (i = 1; i <= n; i++)
	{
		if ((p[i] & 0xc0) != 0x80)
		{
			*s += 1;
			return 0xfffd;
		}
		cp = cp << 6 | (p[i] & 0x3f);
	}
	*s += n + 1;
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ||
		cp < (n == 1 ? 0x80u : n == 2 ? 0x800u : 0x10000u))
		return 0xfffd;
	return cp;
}

/* Writes cp as UTF-8 and a terminating zero into buf (5 bytes). */
static void
put_utf8(uint32_t cp, char *buf)
{
	unsigned char *b = (unsigned char *) buf;

	if (cp < 0x80)
		*b++ = (unsigned char) cp;
	else if (cp < 0x800)
	{
		*b++ = (unsigned char) (0xc0 | cp >> 6);
		*b++ = (unsigned char) (0x80 | (cp & 0x3f));
	}
	else if (cp < 0x10000)
	{
		*b++ = (unsigned char) (0xe0 | cp >> 12);
		*b++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
		*b++ = (unsigned char) (0x80 | (cp & 0x3f));
	}
	else
	{
		*b++ = (unsigned char) (0xf0 | cp >> 18);
		*b++ = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
		*b++ = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
		*b++ = (unsigned char) (0x80 | (cp & 0x3f));
	}
	*b = 0;
}

/*
 * Right ink edge of s drawn at pen x = 0 in fallback font fb, or INT32_MIN
 * on failure.
 */
static int
ink_right(ChartFont font, int fb, double size, const char *s)
{
	int			brect[8];

	if (ft_string(NULL, brect, 0, font, fb, size, 0.0, 0, 0, s) != NULL)
		return INT32_MIN;
	return brect[2];
}

/*
 * Returns the cached face for font and size, creating it (without glyphs)
 * on first use; NULL when the cache is full or memory is short.  Ascent and
 * descent are the primary font's, so mixed scripts share one baseline.
 */
static ChartFace *
get_face(ChartFont font, double size)
{
	int			size_q = (int) (size * 4 + 0.5);
	int			i;
	int			brect[8];
	ChartFace  *f;

	for (i = 0; i < nfaces; i++)
		if (faces[i]->font == font && faces[i]->size_q == size_q)
			return faces[i];
	if (nfaces >= CHART_MAX_FACES)
		return NULL;
	if (ft_string(NULL, brect, 0, font, 0, size_q / 4.0, 0.0, 0, 0,
				  "Hgjpqy|") != NULL)
		return NULL;
	f = calloc(1, sizeof(ChartFace));
	if (f == NULL)
		return NULL;
	f->font = font;
	f->size_q = size_q;
	f->ascent = -brect[7];
	f->descent = brect[1];
	faces[nfaces++] = f;
	return f;
}

/* Empties a face's table of non-ASCII glyphs. */
static void
clear_wide(ChartFace *f)
{
	int			i;

	if (f->wide == NULL)
		return;
	for (i = 0; i < CHART_WIDE_SLOTS; i++)
		free(f->wide[i].cov);
	memset(f->wide, 0, sizeof(ChartGlyph) * CHART_WIDE_SLOTS);
	f->nwide = 0;
}

/*
 * The cache slot of code point cp in face f: the ASCII array, or the wide
 * table, where a missing cp gets a fresh slot when create is set and there
 * is room.  NULL when cp has no slot.
 */
static ChartGlyph *
glyph_slot(ChartFace *f, uint32_t cp, bool create)
{
	uint32_t	h;

	if (cp >= CHART_GLYPH_FIRST && cp <= CHART_GLYPH_LAST)
		return &f->glyph[cp - CHART_GLYPH_FIRST];
	if (f->wide == NULL)
	{
		if (!create)
			return NULL;
		f->wide = calloc(CHART_WIDE_SLOTS, sizeof(ChartGlyph));
		if (f->wide == NULL)
			return NULL;
	}
	/* Fibonacci hashing; the table is never more than 3/4 full */
	h = (cp * 2654435769u) >> 22;
	for (;; h = (h + 1) & (CHART_WIDE_SLOTS - 1))
	{
		ChartGlyph *g = &f->wide[h];

		if (g->loaded && g->cp == cp)
			return g;
		if (!g->loaded)
		{
			if (!create || f->nwide >= CHART_WIDE_LIMIT)
				return NULL;
			g->cp = cp;
			return g;
		}
	}
}

/*
 * Renders code point cp of a face into slot g, through a scratch image, in
 * the first fallback font that has it; false when libgd fails.  The advance
 * is measured between two H's of that font, so side bearings count.
 */
static bool
load_glyph(ChartFace *f, ChartGlyph *g, uint32_t cp)
{
	double		size = f->size_q / 4.0;
	int			fb = fallback_for(f->font, cp);
	int			dim = (int) (size * 4) + 16;
	int			ox = dim / 4,
				oy = dim * 3 / 4;
	gdImagePtr	im;
	char		str[5];
	char		probe[8];
	int			brect[8];
	int			x,
				y,
				minx = dim,
				miny = dim,
				maxx = -1,
				maxy = -1;
	int			right;

	put_utf8(cp, str);
	snprintf(probe, sizeof(probe), "H%sH", str);
	if (f->hh_right[fb] == 0)
		f->hh_right[fb] = ink_right(f->font, fb, size, "HH");
	right = ink_right(f->font, fb, size, probe);
	if (right == INT32_MIN || f->hh_right[fb] == INT32_MIN)
		return false;
	g->advance = (short) (right - f->hh_right[fb]);

	im = gdImageCreateTrueColor(dim, dim);
	if (im == NULL)
		return false;
	gdImageAlphaBlending(im, 1);
	for (y = 0; y < dim; y++)
		for (x = 0; x < dim; x++)
			im->tpixels[y][x] = 0xffffff;
	if (cp != ' ' &&
		ft_string(im, brect, 0x000000, f->font, fb, size, 0.0, ox, oy, str) != NULL)
	{
		gdImageDestroy(im);
		return false;
	}
	for (y = 0; y < dim; y++)
		for (x = 0; x < dim; x++)
			if ((im->tpixels[y][x] & 0xff) != 0xff)
			{
				if (x < minx)
					minx = x;
				if (x > maxx)
					maxx = x;
				if (y < miny)
					miny = y;
				if (y > maxy)
					maxy = y;
			}
	if (maxx >= 0)
	{
		g->w = (short) (maxx - minx + 1);
		g->h = (short) (maxy - miny + 1);
		g->left = (short) (minx - ox);
		g->top = (short) (miny - oy);
		g->cov = malloc((size_t) g->w * g->h);
		if (g->cov == NULL)
		{
			gdImageDestroy(im);
			return false;
		}
		for (y = 0; y < g->h; y++)
			for (x = 0; x < g->w; x++)
				g->cov[y * g->w + x] =
					(unsigned char) (255 - (im->tpixels[miny + y][minx + x] & 0xff));
	}
	gdImageDestroy(im);
	g->loaded = true;
	if (cp < CHART_GLYPH_FIRST || cp > CHART_GLYPH_LAST)
		f->nwide++;
	return true;
}

/*
 * Returns the face with every glyph of s loaded, or NULL.  When the wide
 * table fills up halfway through s it is emptied and s loaded again, once;
 * a string of more distinct characters than the table holds is left to
 * libgd.
 */
static ChartFace *
face_for(ChartCanvas *c, ChartFont font, double size, const char *s)
{
	ChartFace  *f;
	int			attempt;

	if (!c->ttf)
		return NULL;
	f = get_face(font, size);
	if (f == NULL)
		return NULL;
	for (attempt = 0; attempt < 2; attempt++)
	{
		const char *p = s;
		bool		full = false;

		while (*p)
		{
			uint32_t	cp = next_cp(&p);
			ChartGlyph *g = glyph_slot(f, cp, true);

			if (g == NULL)
			{
				full = true;
				break;
			}
			if (!g->loaded && !load_glyph(f, g, cp))
				return NULL;
		}
		if (!full)
			return f;
		clear_wide(f);
	}
	return NULL;
}

static gdFontPtr
builtin_font(ChartFont font)
{
	return font == CHART_FONT_BOLD ? gdFontGetMediumBold() : gdFontGetSmall();
}

/* Width in pixels of s. */
int
chart_text_width(ChartCanvas *c, ChartFont font, double size, const char *s)
{
	ChartFace  *f = face_for(c, font, size, s);
	int			w = 0;

	if (f)
	{
		while (*s)
			w += glyph_slot(f, next_cp(&s), false)->advance;
		return w;
	}
	if (c->ttf)
	{
		int			brect[8];

		if (ft_string(NULL, brect, 0, font, 0, size, 0.0, 0, 0, s) == NULL)
			return brect[2] - brect[0];
	}
	return (int) strlen(s) * builtin_font(font)->w;
}

/* Height in pixels of a line of text (ascent + descent). */
int
chart_text_height(ChartCanvas *c, ChartFont font, double size)
{
	ChartFace  *f = c->ttf ? get_face(font, size) : NULL;

	if (f)
		return f->ascent + f->descent;
	return builtin_font(font)->h;
}

/* Blits one cached glyph; rotated a quarter turn counter-clockwise if up. */
static void
blit_glyph(ChartCanvas *c, const ChartGlyph *g, int penx, int baseline,
		   ChartColor color, bool up)
{
	int			gx,
				gy;

	if (!up && penx + g->left >= 0 && baseline + g->top >= 0 &&
		penx + g->left + g->w <= c->width &&
		baseline + g->top + g->h <= c->height)
	{
		/*
		 * Wholly on the canvas (every glyph of an ordinary chart): no
		 * clipping per pixel.  A coverage of 0 blends to the pixel itself
		 * (DIV255 rounds exactly), so no branch on it either: those
		 * branches were a third of text's time, mispredicted.
		 */
		for (gy = 0; gy < g->h; gy++)
		{
			int		   *row = c->im->tpixels[baseline + g->top + gy] + penx + g->left;
			const unsigned char *cov = g->cov + gy * g->w;

			for (gx = 0; gx < g->w; gx++)
				blend_pixel(&row[gx], color, cov[gx]);
		}
		return;
	}
	for (gy = 0; gy < g->h; gy++)
		for (gx = 0; gx < g->w; gx++)
		{
			int			a = g->cov[gy * g->w + gx];
			int			x,
						y;

			if (a == 0)
				continue;
			if (up)
			{
				/* pen runs upwards along x = baseline column */
				x = baseline + g->top + gy;
				y = penx - (g->left + gx);
			}
			else
			{
				x = penx + g->left + gx;
				y = baseline + g->top + gy;
			}
			if (x >= 0 && y >= 0 && x < c->width && y < c->height)
				blend_pixel(&c->im->tpixels[y][x], color, a);
		}
}

/*
 * Draws s with its line box's top at y, aligned on x.
 */
void
chart_text(ChartCanvas *c, int x, int y, ChartFont font, double size,
		   ChartColor color, ChartAlign align, const char *s)
{
	int			w = chart_text_width(c, font, size, s);
	ChartFace  *f = face_for(c, font, size, s);

	if (align == CHART_ALIGN_CENTER)
		x -= w / 2;
	else if (align == CHART_ALIGN_RIGHT)
		x -= w;

	if (f)
	{
		int			baseline = y + f->ascent;

		while (*s)
		{
			const ChartGlyph *g = glyph_slot(f, next_cp(&s), false);

			if (g->cov)
				blit_glyph(c, g, x, baseline, color, false);
			x += g->advance;
		}
		return;
	}
	if (c->ttf)
	{
		int			brect[8];
		int			asc = chart_text_height(c, font, size) -
			(get_face(font, size) ? get_face(font, size)->descent : 0);

		if (ft_string(c->im, brect, (int) (color & 0xffffff), font, 0, size,
					  0.0, x, y + asc, s) == NULL)
			return;
	}
	gdImageString(c->im, builtin_font(font), x, y, (unsigned char *) s,
				  (int) (color & 0xffffff));
}

/*
 * Draws s reading upwards (for a y axis title), centred on y_center, with
 * the top of its line box at column x.
 */
void
chart_text_up(ChartCanvas *c, int x, int y_center, ChartFont font,
			  double size, ChartColor color, const char *s)
{
	int			w = chart_text_width(c, font, size, s);
	ChartFace  *f = face_for(c, font, size, s);
	int			pen = y_center + w / 2;

	if (f)
	{
		int			baseline = x + f->ascent;

		while (*s)
		{
			const ChartGlyph *g = glyph_slot(f, next_cp(&s), false);

			if (g->cov)
				blit_glyph(c, g, pen, baseline, color, true);
			pen -= g->advance;
		}
		return;
	}
	if (c->ttf)
	{
		int			brect[8];
		ChartFace  *ff = get_face(font, size);

		if (ff && ft_string(c->im, brect, (int) (color & 0xffffff), font, 0,
							size, M_PI / 2, x + ff->ascent, pen, s) == NULL)
			return;
	}
	gdImageStringUp(c->im, builtin_font(font), x, pen, (unsigned char *) s,
					(int) (color & 0xffffff));
}

/*
 * s, or s cut at a character boundary with "..." appended so that it fits
 * in maxw pixels (in buf); "" when not even "..." fits.
 */
const char *
chart_fit_text(ChartCanvas *c, ChartFont font, double size, const char *s,
			   int maxw, char *buf, size_t buflen)
{
	size_t		n;

	if (chart_text_width(c, font, size, s) <= maxw)
		return s;
	n = strlen(s);
	if (n >= buflen - 4)
		n = buflen - 4;
	while (n > 0)
	{
		n--;
		/* do not cut a UTF-8 sequence */
		while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80)
			n--;
		memcpy(buf, s, n);
		memcpy(buf + n, "...", 4);
		if (chart_text_width(c, font, size, buf) <= maxw)
			return buf;
	}
	return "";
}
