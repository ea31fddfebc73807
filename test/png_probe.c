/*
 * png_probe.c
 *		Test helper: decodes a PNG with libgd (libpng), independently of the
 *		extension's encoder, and prints the colour of requested pixels.
 *
 *	png_probe IMAGE.hex COORDS
 *		IMAGE.hex: the PNG as one line of hex digits (COPY of encode(png, 'hex'))
 *		COORDS: lines "x<TAB>y"
 *	Prints "x<TAB>y<TAB>rrggbb" per coordinate ("outside" when off the image),
 *	or one line "error<TAB>0<TAB>message" when the PNG does not decode.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gd.h>

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
main(int argc, char **argv)
{
	FILE	   *f;
	unsigned char *png;
	size_t		cap = 1 << 20,
				n = 0;
	int			c,
				hi = -1,
				x,
				y;
	gdImagePtr	im;

	if (argc != 3)
	{
		fprintf(stderr, "usage: png_probe IMAGE.hex COORDS\n");
		return 2;
	}
	f = fopen(argv[1], "r");
	if (!f)
	{
		perror(argv[1]);
		return 1;
	}
	png = malloc(cap);
	while ((c = fgetc(f)) != EOF)
	{
		int			v = hexval(c);

		if (v < 0)
			continue;
		if (hi < 0)
		{
			hi = v;
			continue;
		}
		if (n == cap)
			png = realloc(png, cap *= 2);
		png[n++] = (unsigned char) (hi << 4 | v);
		hi = -1;
	}
	fclose(f);
	im = gdImageCreateFromPngPtr((int) n, png);
	if (im == NULL)
	{
		printf("error\t0\tdoes not decode\n");
		return 0;
	}
	f = fopen(argv[2], "r");
	if (!f)
	{
		perror(argv[2]);
		return 1;
	}
	while (fscanf(f, "%d %d", &x, &y) == 2)
	{
		if (x < 0 || y < 0 || x >= gdImageSX(im) || y >= gdImageSY(im))
			printf("%d\t%d\toutside\n", x, y);
		else
		{
			int			p = gdImageGetTrueColorPixel(im, x, y);

			printf("%d\t%d\t%02x%02x%02x\n", x, y, gdTrueColorGetRed(p),
				   gdTrueColorGetGreen(p), gdTrueColorGetBlue(p));
		}
	}
	fclose(f);
	gdImageDestroy(im);
	free(png);
	return 0;
}
