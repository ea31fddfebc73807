/*
 * chart_png.c
 *		PNG files for chart canvases: framing (signature, IHDR, tEXt chunks,
 *		IDAT, IEND, CRC-32) and the choice of encoder (see chart_png.h).
 *
 * libgd's encoder (gdImagePngPtrEx) spends 10 to 13 ms on a 1200x600
 * truecolor image whatever the compression level, because libpng tries
 * every row filter; zlib at level 1 alone takes about 4.5 ms on the same
 * rows.  Charts are long runs of one colour and rows that repeat the row
 * above, so the encoders here find their matches by comparing each pixel
 * with the one before and the one above, never by searching.
 * Pure C: see chart.h.
 */
#include <stdlib.h>
#include <string.h>

#include "chart_png.h"

static uint32_t crc_table[8][256];	/* slicing-by-8 */
static bool crc_ready = false;

static void
chart_png_crc_init(void)
{
	uint32_t	n,
				k;

	for (n = 0; n < 256; n++)
	{
		uint32_t	c = n;

		for (k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[0][n] = c;
	}
	for (n = 0; n < 256; n++)
		for (k = 1; k < 8; k++)
			crc_table[k][n] = (crc_table[k - 1][n] >> 8) ^
				crc_table[0][crc_table[k - 1][n] & 0xff];
	crc_ready = true;
}

/* CRC-32 (PNG, zlib) of n bytes, eight at a time. */
uint32_t
chart_png_crc(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n >= 8)
	{
		uint32_t	lo = crc ^ ((uint32_t) p[0] | (uint32_t) p[1] << 8 |
								(uint32_t) p[2] << 16 | (uint32_t) p[3] << 24);
		uint32_t	hi = (uint32_t) p[4] | (uint32_t) p[5] << 8 |
			(uint32_t) p[6] << 16 | (uint32_t) p[7] << 24;

		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
			crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
			crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
			crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

void
chart_png_reserve(PngOut *o, size_t more)
{
	if (o->failed || o->len + more <= o->cap)
		return;
	{
		size_t		cap = o->cap * 2 + more + 4096;
		unsigned char *nb = realloc(o->buf, cap);

		if (nb == NULL)
		{
			o->failed = true;
			return;
		}
		o->buf = nb;
		o->cap = cap;
	}
}

void
chart_png_bytes(PngOut *o, const void *p, size_t n)
{
	chart_png_reserve(o, n);
	if (o->failed)
		return;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

void
chart_png_be32(PngOut *o, uint32_t v)
{
	unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};

	chart_png_bytes(o, b, 4);
}

/* Writes the signature, IHDR of the given colour type, and tEXt chunks. */
void
chart_png_put_header(PngOut *o, int w, int h, int color_type,
					 const char *const *text_keys,
					 const char *const *text_values, int ntext)
{
	static const unsigned char sig[8] = {137, 'P', 'N', 'G', 13, 10, 26, 10};
	unsigned char ihdr[17];
	int			x;

	chart_png_bytes(o, sig, 8);
	memcpy(ihdr, "IHDR", 4);
	ihdr[4] = w >> 24, ihdr[5] = w >> 16, ihdr[6] = w >> 8, ihdr[7] = w;
	ihdr[8] = h >> 24, ihdr[9] = h >> 16, ihdr[10] = h >> 8, ihdr[11] = h;
	ihdr[12] = 8;				/* bit depth */
	ihdr[13] = (unsigned char) color_type;
	ihdr[14] = ihdr[15] = ihdr[16] = 0;
	chart_png_be32(o, 13);
	chart_png_bytes(o, ihdr, 17);
	chart_png_be32(o, chart_png_crc(0xffffffffu, ihdr, 17) ^ 0xffffffffu);

	for (x = 0; x < ntext; x++)
	{
		size_t		kl = strlen(text_keys[x]),
					vl = strlen(text_values[x]);
		size_t		start;

		chart_png_be32(o, (uint32_t) (kl + 1 + vl));
		start = o->len;
		chart_png_bytes(o, "tEXt", 4);
		chart_png_bytes(o, text_keys[x], kl + 1);
		chart_png_bytes(o, text_values[x], vl);
		if (!o->failed)
			chart_png_be32(o, chart_png_crc(0xffffffffu, o->buf + start, o->len - start) ^ 0xffffffffu);
	}
}

/* Writes the IDAT chunk's length placeholder and type; returns its start. */
size_t
chart_png_begin_idat(PngOut *o)
{
	size_t		start;

	chart_png_be32(o, 0);				/* patched by chart_png_end_idat */
	start = o->len;
	chart_png_bytes(o, "IDAT", 4);
	return start;
}

/*
 * Patches the IDAT length, writes its CRC and IEND; returns the file (and
 * its length), or NULL, freeing the buffer, when out of memory.
 */
unsigned char *
chart_png_end_idat(PngOut *o, size_t idat_start, size_t *len)
{
	if (!o->failed)
	{
		uint32_t	n = (uint32_t) (o->len - idat_start - 4);

		o->buf[idat_start - 4] = n >> 24;
		o->buf[idat_start - 3] = n >> 16;
		o->buf[idat_start - 2] = n >> 8;
		o->buf[idat_start - 1] = n;
		chart_png_be32(o, chart_png_crc(0xffffffffu, o->buf + idat_start, o->len - idat_start) ^ 0xffffffffu);
	}
	chart_png_be32(o, 0);
	chart_png_bytes(o, "IEND", 4);
	chart_png_be32(o, 0xae426082u);
	if (o->failed)
	{
		free(o->buf);
		o->buf = NULL;
		return NULL;
	}
	*len = o->len;
	return o->buf;
}

/*
 * Encodes the canvas as a PNG with ntext tEXt chunks: indexed colour when
 * the canvas has at most 4,096 colours (every chart so far), RGB
 * otherwise.  Returns malloc'd bytes and their length, or NULL when out of
 * memory.
 */
unsigned char *
chart_png_encode(const ChartCanvas *c, const char *const *text_keys,
				 const char *const *text_values, int ntext, size_t *len)
{
	unsigned char *png;
	bool		too_many;

	if (!crc_ready)
		chart_png_crc_init();
	png = chart_png_encode_palette(c, text_keys, text_values, ntext, len,
								   &too_many);
	if (png == NULL && too_many)
		png = chart_png_encode_rgb(c, text_keys, text_values, ntext, len);
	return png;
}
