/*
 * fuzz_png.c
 *		libFuzzer target for the PNG encoder (src/chart_png.c): any canvas
 *		size up to 64x64 pixels, any pixels (runs and repeated rows are
 *		what the encoder's matches look for, so the input is expanded into
 *		them), any tEXt chunks.  The PNG is decoded again with libgd and
 *		must give back every pixel: exactly when the canvas has at most 256
 *		colours, and otherwise within the palette's bound (a squared RGB
 *		distance of PAL_MAX_DIST2 = 300, chart_png_palette.c; the RGB
 *		encoder, chosen beyond it, is exact).
 *
 * Input: width, height, then per pixel one op byte (0-63: new colour from
 * the next three bytes; 64-127: same as the left pixel; else same as the
 * pixel above), then the rest is split at NULs into tEXt keys and values.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chart.h"

#define Min(a, b) ((a) < (b) ? (a) : (b))

#define PAL_MAX_DIST2 300

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
cmp_pixel(const void *a, const void *b)
{
	int			x = *(const int *) a,
				y = *(const int *) b;

	return (x > y) - (x < y);
}

/* The number of distinct colours of the canvas. */
static int
count_colours(gdImagePtr im, int w, int h)
{
	static int	px[64 * 64];
	int			n = 0,
				distinct = 0;

	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			px[n++] = gdImageTrueColorPixel(im, x, y);
	qsort(px, n, sizeof(int), cmp_pixel);
	for (int i = 0; i < n; i++)
		if (i == 0 || px[i] != px[i - 1])
			distinct++;
	return distinct;
}

static int
dist2(int a, int b)
{
	int			dr = ((a >> 16) & 0xff) - ((b >> 16) & 0xff),
				dg = ((a >> 8) & 0xff) - ((b >> 8) & 0xff),
				db = (a & 0xff) - (b & 0xff);

	return dr * dr + dg * dg + db * db;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ChartCanvas c;
	const uint8_t *p = data,
			   *end = data + size;
	const char *keys[4],
			   *values[4];
	char		text[512];
	bool		exact;
	int			w,
				h,
				ntext = 0;
	size_t		len = 0,
				tl;
	unsigned char *png;
	gdImagePtr	back;

	if (size < 2)
		return 0;
	w = 1 + p[0] % 64;
	h = 1 + p[1] % 64;
	p += 2;
	memset(&c, 0, sizeof(c));
	c.im = gdImageCreateTrueColor(w, h);
	if (c.im == NULL)
		return 0;
	c.width = w;
	c.height = h;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
		{
			int			op = p < end ? *p++ : 255;
			int			px;

			if (op < 64 || (x == 0 && y == 0))
			{
				px = p + 3 <= end ? (p[0] << 16 | p[1] << 8 | p[2]) : op;
				p += p + 3 <= end ? 3 : 0;
			}
			else if ((op < 128 && x > 0) || y == 0)
				px = gdImageTrueColorPixel(c.im, x > 0 ? x - 1 : x, y > 0 && x == 0 ? y - 1 : y);
			else
				px = gdImageTrueColorPixel(c.im, x, y - 1);
			gdImageTrueColorPixel(c.im, x, y) = px & 0xffffff;
		}

	/* What is left: key NUL value NUL ..., Latin-1, at most four pairs. */
	tl = Min((size_t) (end - p), sizeof(text) - 2);
	memcpy(text, p, tl);
	text[tl] = text[tl + 1] = '\0';
	for (size_t i = 0; i < tl && ntext < 4;)
	{
		keys[ntext] = text + i;
		i += strlen(text + i) + 1;
		if (i > tl)
			break;
		values[ntext++] = text + i;
		i += strlen(text + i) + 1;
	}

	png = chart_png_encode(&c, keys, values, ntext, &len);
	if (png == NULL)
		abort();
	back = gdImageCreateFromPngPtr((int) len, png);
	if (back == NULL || gdImageSX(back) != w || gdImageSY(back) != h)
		abort();
	exact = count_colours(c.im, w, h) <= 256;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
		{
			int			got = gdImageGetTrueColorPixel(back, x, y) & 0xffffff;
			int			want = gdImageTrueColorPixel(c.im, x, y);

			if (exact ? got != want : dist2(got, want) > PAL_MAX_DIST2)
				abort();
		}
	gdImageDestroy(back);
	free(png);
	gdImageDestroy(c.im);
	return 0;
}
