/*
 * chart_png_check.c
 *		Test helper: encodes canvases the chart drawing never makes with the
 *		extension's encoder (src/chart_png*.c), decodes them with libgd
 *		(libpng) and compares every pixel:
 *			few		3 colours (exact palette)
 *			blends	blue blended over 4 backgrounds at any alpha, about
 *					1,000 colours (256-entry palette, the rest to the nearest)
 *			noise	every pixel random (more than 4,096 colours: RGB)
 *		at a few sizes.  Prints per canvas the colour type, whether every
 *		pixel came back exactly, and the largest channel error; writes each
 *		PNG to DIR for pngcheck.
 *
 *	chart_png_check DIR
 */
#include <stdio.h>
#include <stdlib.h>

#include "chart.h"

static uint32_t rng = 12345;

static uint32_t
next_rand(void)
{
	rng = rng * 1103515245u + 12345u;
	return rng >> 8;
}

int
main(int argc, char **argv)
{
	static const char *kinds[] = {"few", "blends", "noise"};
	static const int sizes[][2] = {{100, 100}, {101, 37}, {640, 480}, {1200, 600}};
	int			k,
				s;

	if (argc != 2)
	{
		fprintf(stderr, "usage: chart_png_check DIR\n");
		return 2;
	}
	for (k = 0; k < 3; k++)
		for (s = 0; s < 4; s++)
		{
			int			w = sizes[s][0],
						h = sizes[s][1],
						x,
						y,
						maxerr = 0;
			bool		exact = true;
			ChartCanvas c;
			size_t		len;
			unsigned char *png;
			gdImagePtr	im;
			char		path[512];
			FILE	   *f;

			if (!chart_canvas_init(&c, w, h, 0xffffff))
				return 1;
			for (y = 0; y < h; y++)
				for (x = 0; x < w; x++)
				{
					int			p;

					if (k == 0)
						p = ((x / 7 + y / 5) % 3 == 0) ? 0x3a6fd8 : ((x + y) % 11 == 0 ? 0xe0201b : 0xffffff);
					else if (k == 1)
					{
						/* antialiasing: blue over 4 backgrounds, any alpha */
						static const int bg[4] = {0xffffff, 0xdae4f8, 0xe6e6e6, 0xe0201b};
						int			a = (int) (next_rand() % 256),
									q = bg[next_rand() % 4],
									sh;

						p = 0;
						for (sh = 0; sh < 24; sh += 8)
							p |= ((((0x3a6fd8 >> sh) & 0xff) * a +
								   ((q >> sh) & 0xff) * (255 - a)) / 255) << sh;
					}
					else
						p = (int) (next_rand() & 0xffffff);
					/* runs and repeated rows, as charts have */
					if (k > 0 && x % 9 > 3)
						p = c.im->tpixels[y][x - 1];
					if (k > 0 && y % 4 == 1)
						p = c.im->tpixels[y - 1][x];
					c.im->tpixels[y][x] = p & 0xffffff;
				}
			png = chart_png_encode(&c, NULL, NULL, 0, &len);
			if (png == NULL)
				return 1;
			snprintf(path, sizeof(path), "%s/check_%s_%dx%d.png", argv[1], kinds[k], w, h);
			f = fopen(path, "wb");
			if (f == NULL || fwrite(png, 1, len, f) != len)
				return 1;
			fclose(f);
			im = gdImageCreateFromPngPtr((int) len, png);
			if (im == NULL)
			{
				printf("%s %dx%d: does not decode\n", kinds[k], w, h);
				continue;
			}
			for (y = 0; y < h; y++)
				for (x = 0; x < w; x++)
				{
					int			a = c.im->tpixels[y][x],
								b = gdImageGetTrueColorPixel(im, x, y) & 0xffffff;
					int			sh;

					if (a != b)
						exact = false;
					for (sh = 0; sh < 24; sh += 8)
					{
						int			d = abs(((a >> sh) & 0xff) - ((b >> sh) & 0xff));

						if (d > maxerr)
							maxerr = d;
					}
				}
			printf("%s %dx%d: colour type %d, %s, largest channel error %s\n",
				   kinds[k], w, h, png[25], exact ? "every pixel exact" : "not exact",
				   maxerr == 0 ? "0" : maxerr <= 17 ? "at most 17" : "above 17");
			gdImageDestroy(im);
			free(png);
			chart_canvas_release(&c);
		}
	return 0;
}
