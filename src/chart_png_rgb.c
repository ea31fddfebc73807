/*
 * chart_png_rgb.c
 *		The RGB PNG encoder: for canvases of more colours than the palette
 *		encoder takes (chart_png_palette.c), which no chart has had so far.
 *
 * 8-bit RGB rows with filter type 0 in one fixed-Huffman deflate block
 * whose only matches are "same pixel as the one before" (distance 3) and
 * "same bytes as the row above" (distance = row length).  The Adler-32 of
 * a row is derived from the row above's plus the changed pixels.  On the
 * 1,440-point reference chart that is about 0.7 ms, for 247 KB (the palette
 * encoder: 82 KB).  Runs are found eight pixels at a time with SSE2 where
 * the compiler has it.  Pure C: see chart.h.
 */
#include <stdlib.h>
#include <string.h>

#include "chart_png.h"

/* Fixed Huffman literal/length codes, already bit-reversed. */
static uint16_t lit_code[288];
static uint8_t lit_len[288];

static bool codes_ready = false;

static void
init_fixed_codes(void)
{
	uint32_t	n,
				k;

	for (n = 0; n < 288; n++)
	{
		uint32_t	code,
					len,
					rev = 0;

		if (n < 144)
			code = 0x30 + n, len = 8;
		else if (n < 256)
			code = 0x190 + (n - 144), len = 9;
		else if (n < 280)
			code = n - 256, len = 7;
		else
			code = 0xc0 + (n - 280), len = 8;
		for (k = 0; k < len; k++)
			rev |= ((code >> k) & 1) << (len - 1 - k);
		lit_code[n] = (uint16_t) rev;
		lit_len[n] = (uint8_t) len;
	}
}

static inline void
put_literal(BitSink *bs, int byte)
{
	put_bits(bs, lit_code[byte], lit_len[byte]);
}

/* Literal/length code and extra bits of each match length 3..258. */
static uint32_t len_bits[259];
static uint8_t len_nbits[259];

/* Distance code plus extra bits for one distance, computed per image. */
typedef struct DistCode
{
	uint32_t	bits;
	int			nbits;
} DistCode;

static void
init_length_codes(void)
{
	static const uint16_t len_base[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19,
		23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
	static const uint8_t len_extra[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2,
		2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
	int			len,
				i = 0;

	for (len = 3; len <= 258; len++)
	{
		while (i < 28 && len_base[i + 1] <= len)
			i++;
		len_bits[len] = lit_code[257 + i] |
			(uint32_t) (len - len_base[i]) << lit_len[257 + i];
		len_nbits[len] = (uint8_t) (lit_len[257 + i] + len_extra[i]);
	}
}

static DistCode
dist_code(int dist)
{
	static const uint16_t dist_base[] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49,
		65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
		6145, 8193, 12289, 16385, 24577};
	static const uint8_t dist_extra[] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5,
		5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
	DistCode	dc;
	int			d = 29,
				k,
				rev = 0;

	while (dist_base[d] > dist)
		d--;
	for (k = 0; k < 5; k++)
		rev |= ((d >> k) & 1) << (4 - k);
	dc.bits = (uint32_t) rev | (uint32_t) (dist - dist_base[d]) << 5;
	dc.nbits = 5 + dist_extra[d];
	return dc;
}

/* Emits one match of 3..258 bytes. */
static inline void
put_match(BitSink *bs, int len, const DistCode *dc)
{
	put_bits(bs, len_bits[len], len_nbits[len]);
	put_bits(bs, dc->bits, dc->nbits);
}

/* Emits one pixel's three bytes as literals. */
static inline void
put_pixel_literal(BitSink *bs, int p)
{
	uint32_t	r = (p >> 16) & 0xff,
				g = (p >> 8) & 0xff,
				bl = p & 0xff;

	put_bits(bs, lit_code[r] | (uint32_t) lit_code[g] << lit_len[r] |
			 (uint32_t) lit_code[bl] << (lit_len[r] + lit_len[g]),
			 lit_len[r] + lit_len[g] + lit_len[bl]);
}

/* Emits a copy of npix pixels (3 bytes each) from dc's distance back. */
static inline void
put_pixel_copy(BitSink *bs, int npix, const DistCode *dc)
{
	while (npix > 0)
	{
		int			n = npix > 86 ? 85 : npix;	/* 85 * 3 = 255 <= 258 */

		put_match(bs, n * 3, dc);
		npix -= n;
	}
}

/* Emits a copy of len (>= 3) bytes from dist bytes back. */
static inline void
put_byte_copy(BitSink *bs, int len, const DistCode *dc)
{
	while (len > 0)
	{
		int			n = len > 258 ? 258 : len;

		/* never leave a tail shorter than a match */
		if (len - n > 0 && len - n < 3)
			n = len - 3;
		put_match(bs, n, dc);
		len -= n;
	}
}

/* Sums of a pixel's bytes that its Adler-32 contribution is made of */
#define PIX_SUM(p) ((((p) >> 16) & 0xff) + (((p) >> 8) & 0xff) + ((p) & 0xff))
#define PIX_GB2(p) ((((p) >> 8) & 0xff) + 2 * ((p) & 0xff))

/*
 * Adler-32 contribution of one row (filter byte 0 then RGB pixels) started
 * from a = 0, b = 0: *s is the sum of its bytes, *bsum the sum of the running
 * sums.  Runs of one colour are summed in closed form.
 */
static void
row_adler(const int *row, int w, uint64_t *s, uint64_t *bsum)
{
	uint64_t	a = 0,
				b = 0;
	int			x = 0;

	while (x < w)
	{
		int			p = row[x];
		uint64_t	n = 1,
					r = (p >> 16) & 0xff,
					g = (p >> 8) & 0xff,
					bl = p & 0xff,
					ps = r + g + bl,
					pc = 3 * r + 2 * g + bl;

		while (x + (int) n < w && row[x + n] == p)
			n++;
		b += 3 * n * a + 3 * ps * (n * (n - 1) / 2) + n * pc;
		a += n * ps;
		x += (int) n;
	}
	*s = a % 65521;
	*bsum = b % 65521;
}

/*
 * Encodes the canvas as an 8-bit RGB PNG in one fixed-Huffman block, with
 * ntext tEXt chunks.  Returns malloc'd bytes and their length, or NULL
 * when out of memory.
 */
unsigned char *
chart_png_encode_rgb(const ChartCanvas *c, const char *const *text_keys,
					 const char *const *text_values, int ntext, size_t *len)
{
	PngOut		o = {0};
	int			w = c->width,
				h = c->height;
	int			stride = 1 + 3 * w;
	size_t		idat_start;
	uint64_t	a = 1,
				b = 0,
				row_s = 0,
				row_b = 0;
	int			x,
				y;

	DistCode	d_pixel,
				d_row;
	BitSink		bs = {0};

	if (!codes_ready)
	{
		init_fixed_codes();
		init_length_codes();
		codes_ready = true;
	}
	d_pixel = dist_code(3);
	d_row = dist_code(stride);
	o.cap = (size_t) w * h / 2 + 65536;	/* dense charts need ~0.35 byte/pixel */
	o.buf = malloc(o.cap);
	if (o.buf == NULL)
		return NULL;

	chart_png_put_header(&o, w, h, 2, text_keys, text_values, ntext);

	idat_start = chart_png_begin_idat(&o);
	{
		unsigned char zh[2] = {0x78, 0x01};

		chart_png_bytes(&o, zh, 2);
	}
	bs.bits = 3;				/* BFINAL = 1, BTYPE = 01 (fixed) */
	bs.nbits = 3;

	for (y = 0; y < h && !o.failed; y++)
	{
		const int  *row = c->im->tpixels[y];
		const int  *prev = y > 0 ? c->im->tpixels[y - 1] : NULL;

		/* worst case: 9 bits per byte, plus slack for the bit buffer */
		chart_png_reserve(&o, (size_t) stride * 2 + 64);
		if (o.failed)
			break;
		bs.p = o.buf + o.len;

		if (prev && same_prefix(row, prev, w) == w)
		{
			/* the whole row, filter byte included, repeats the one above */
			put_byte_copy(&bs, stride, &d_row);
		}
		else if (prev == NULL)
		{
			row_adler(row, w, &row_s, &row_b);
			put_literal(&bs, 0);		/* filter type None */
			x = 0;
			while (x < w)
			{
				int			p = row[x];
				int			n = 1;

				while (x + n < w && row[x + n] == p)
					n++;
				put_pixel_literal(&bs, p);
				if (n > 1)
					put_pixel_copy(&bs, n - 1, &d_pixel);
				x += n;
			}
		}
		else
		{
			/*
			 * Copy what repeats the row above; the Adler-32 sums of this
			 * row are those of the row above plus the changed pixels'
			 * differences (byte k of the row weighs stride - k in b).
			 */
			int64_t		ds = 0,		/* sum of (r + g + b) differences */
						dk = 0,		/* the same, each times its pixel's x */
						dt = 0,		/* sum of (g + 2 b) differences */
						db;

			put_literal(&bs, 0);		/* filter type None */
			x = 0;
			while (x < w)
			{
				int			p = row[x],
							q = prev[x];
				int			n,
							sp,
							tp,
							dsum;

				if (q == p)
				{
					n = same_prefix(row + x, prev + x, w - x);
					put_pixel_copy(&bs, n, &d_row);
					x += n;
					continue;
				}
				sp = PIX_SUM(p);
				tp = PIX_GB2(p);
				dsum = sp - PIX_SUM(q);
				ds += dsum;
				dk += (int64_t) x * dsum;
				dt += tp - PIX_GB2(q);
				for (n = 1; x + n < w && row[x + n] == p && (q = prev[x + n]) != p; n++)
				{
					dsum = sp - PIX_SUM(q);
					ds += dsum;
					dk += (int64_t) (x + n) * dsum;
					dt += tp - PIX_GB2(q);
				}
				if (x == 0 || row[x - 1] != p)
				{
					put_pixel_literal(&bs, p);
					if (n > 1)
						put_pixel_copy(&bs, n - 1, &d_pixel);
				}
				else
					put_pixel_copy(&bs, n, &d_pixel);
				x += n;
			}

			/*
			 * Byte r of pixel x weighs wr = stride - 1 - 3 x in b, g and b
			 * weigh wr - 1 and wr - 2: the pixel adds wr (r + g + b) -
			 * (g + 2 b).
			 */
			db = (int64_t) (stride - 1) * ds - 3 * dk - dt;
			row_s = (uint64_t) (((int64_t) row_s + ds % 65521 + 65521) % 65521);
			row_b = (uint64_t) (((int64_t) row_b + db % 65521 + 65521) % 65521);
		}
		o.len = bs.p - o.buf;
		/* each of the row's bytes adds the running a to b */
		b = (b + (uint64_t) stride * a + row_b) % 65521;
		a = (a + row_s) % 65521;
	}
	chart_png_reserve(&o, 64);
	if (!o.failed)
	{
		bs.p = o.buf + o.len;
		put_literal(&bs, 256);	/* end of block */
		if (bs.nbits > 0)
			*bs.p++ = (unsigned char) bs.bits;
		o.len = bs.p - o.buf;
	}
	chart_png_be32(&o, (uint32_t) ((b << 16) | a));
	return chart_png_end_idat(&o, idat_start, len);
}
