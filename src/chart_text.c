/*
 * chart_text.c
 *		Text for metric_anomaly's charts: fonts, a glyph cache, measuring,
 *		fitting and drawing strings, also rotated.
 *
 * libgd rasterises TrueType glyphs; each is rendered once per face and
 * size and cached, then blitted into the canvas's truecolor rows.  Each
 * character comes from the first font of a fallback list that has it:
 * fontconfig's sorted list for "DejaVu Sans" (DejaVu first, then the other
 * installed fonts by closeness, e.g. WenQuanYi Micro Hei or Noto Sans CJK
 * for Chinese), so a string mixing scripts ("注册 signups ✓") draws every
 * glyph.  libgd's built-in bitmap fonts are the fallback when no TrueType
 * font works.  Pure C: see chart.h.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fontconfig/fontconfig.h>
#include <gdfontmb.h>
#include <gdfonts.h>

#include "chart.h"
#include "chart_blend.h"

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
bool
chart_text_available(void)
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
 * Blits the cached glyphs of s from pen on: along the row at baseline, or
 * (up) up the column at baseline, each rotated a quarter turn.
 */
static void
blit_string(ChartCanvas *c, ChartFace *f, int pen, int baseline,
			ChartColor color, bool up, const char *s)
{
	while (*s)
	{
		const ChartGlyph *g = glyph_slot(f, next_cp(&s), false);

		if (g->cov)
			blit_glyph(c, g, pen, baseline, color, up);
		pen += up ? -g->advance : g->advance;
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
		blit_string(c, f, x, y + f->ascent, color, false, s);
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
		blit_string(c, f, pen, x + f->ascent, color, true, s);
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
