/*
 * chart_png.c
 *		A small, fast PNG encoder for chart canvases.
 *
 * libgd's encoder (gdImagePngPtrEx) spends 10 to 13 ms on a 1200x600
 * truecolor image whatever the compression level, because libpng tries
 * every row filter; zlib at level 1 alone takes about 4.5 ms on the same
 * rows.  Charts are long runs of one colour and rows that repeat the row
 * above, so this encoder writes 8-bit RGB rows with filter type 0 and one
 * fixed-Huffman deflate block whose only matches are "same pixel as the one
 * before" (distance 3) and "same bytes as the row above" (distance = row
 * length).  The Adler-32 of a row is derived from the row above's plus the
 * changed pixels.  On the 1,440-point reference chart that is about 0.7 ms,
 * for a file about three times the size zlib would make.  Runs are found
 * eight pixels at a time with SSE2 where the compiler has it.
 * Pure C: see chart.h.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "chart.h"

typedef struct PngOut
{
	unsigned char *buf;
	size_t		len;
	size_t		cap;
	bool		failed;
} PngOut;

/*
 * The deflate bit stream being written into reserved room of a PngOut.  It
 * lives in the encoder's locals, apart from the PngOut, so that the
 * compiler keeps it in registers across the stores to the output.
 */
typedef struct BitSink
{
	unsigned char *p;			/* next byte */
	uint64_t	bits;			/* pending bits, LSB first; fewer than 8 */
	int			nbits;
} BitSink;

static uint32_t crc_table[8][256];	/* slicing-by-8 */
static bool crc_ready = false;

/* Fixed Huffman literal/length codes, already bit-reversed. */
static uint16_t lit_code[288];
static uint8_t lit_len[288];

static void
init_tables(void)
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
	crc_ready = true;
}

/* CRC-32 (PNG, zlib) of n bytes, eight at a time. */
static uint32_t
crc_update(uint32_t crc, const unsigned char *p, size_t n)
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

static void
out_reserve(PngOut *o, size_t more)
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

static void
out_bytes(PngOut *o, const void *p, size_t n)
{
	out_reserve(o, n);
	if (o->failed)
		return;
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

static void
out_be32(PngOut *o, uint32_t v)
{
	unsigned char b[4] = {v >> 24, v >> 16, v >> 8, v};

	out_bytes(o, b, 4);
}

/*
 * Appends nbits (<= 32) bits of v, least significant first (deflate bit
 * order).  The caller has reserved room (see the per-row reservation): this
 * stores eight bytes every time and keeps the whole ones, which costs less
 * than a branch that is taken at random.
 */
static inline void
put_bits(BitSink *bs, uint32_t v, int nbits)
{
	uint64_t	le;
	int			whole;

	bs->bits |= (uint64_t) v << bs->nbits;
	bs->nbits += nbits;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	le = __builtin_bswap64(bs->bits);
#else
	le = bs->bits;
#endif
	memcpy(bs->p, &le, 8);
	whole = bs->nbits >> 3;		/* at most 5: fewer than 8 bits were left */
	bs->p += whole;
	bs->bits >>= 8 * whole;
	bs->nbits &= 7;
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

/*
 * Number of leading pixels on which a and b agree (0..n).  Chart rows mostly
 * repeat the row above, so this compares eight pixels per step.
 */
static inline int
same_prefix(const int *a, const int *b, int n)
{
	int			i = 0;

#ifdef __SSE2__
	while (i + 8 <= n)
	{
		__m128i		e0 = _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *) (a + i)),
										 _mm_loadu_si128((const __m128i *) (b + i)));
		__m128i		e1 = _mm_cmpeq_epi32(_mm_loadu_si128((const __m128i *) (a + i + 4)),
										 _mm_loadu_si128((const __m128i *) (b + i + 4)));
		int			m = _mm_movemask_ps(_mm_castsi128_ps(e0)) |
			(_mm_movemask_ps(_mm_castsi128_ps(e1)) << 4);

		if (m != 0xff)
			return i + __builtin_ctz(~m);
		i += 8;
	}
#else
	while (i + 8 <= n)
	{
		uint64_t	wa[4],
					wb[4];

		memcpy(wa, a + i, 32);
		memcpy(wb, b + i, 32);
		if (((wa[0] ^ wb[0]) | (wa[1] ^ wb[1]) |
			 (wa[2] ^ wb[2]) | (wa[3] ^ wb[3])) != 0)
			break;
		i += 8;
	}
#endif
	while (i < n && a[i] == b[i])
		i++;
	return i;
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
 * Encodes the canvas as an 8-bit RGB PNG, with ntext tEXt chunks.
 * Returns malloc'd bytes and their length, or NULL when out of memory.
 */
unsigned char *
chart_png_encode(const ChartCanvas *c, const char *const *text_keys,
				 const char *const *text_values, int ntext, size_t *len)
{
	static const unsigned char sig[8] = {137, 'P', 'N', 'G', 13, 10, 26, 10};
	PngOut		o = {0};
	int			w = c->width,
				h = c->height;
	int			stride = 1 + 3 * w;
	unsigned char ihdr[17];
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

	if (!crc_ready)
	{
		init_tables();
		init_length_codes();
	}
	d_pixel = dist_code(3);
	d_row = dist_code(stride);
	o.cap = (size_t) w * h / 2 + 65536;	/* dense charts need ~0.35 byte/pixel */
	o.buf = malloc(o.cap);
	if (o.buf == NULL)
		return NULL;

	out_bytes(&o, sig, 8);

	memcpy(ihdr, "IHDR", 4);
	ihdr[4] = w >> 24, ihdr[5] = w >> 16, ihdr[6] = w >> 8, ihdr[7] = w;
	ihdr[8] = h >> 24, ihdr[9] = h >> 16, ihdr[10] = h >> 8, ihdr[11] = h;
	ihdr[12] = 8;				/* bit depth */
	ihdr[13] = 2;				/* RGB */
	ihdr[14] = ihdr[15] = ihdr[16] = 0;
	out_be32(&o, 13);
	out_bytes(&o, ihdr, 17);
	out_be32(&o, crc_update(0xffffffffu, ihdr, 17) ^ 0xffffffffu);

	for (x = 0; x < ntext; x++)
	{
		size_t		kl = strlen(text_keys[x]),
					vl = strlen(text_values[x]);
		size_t		start;

		out_be32(&o, (uint32_t) (kl + 1 + vl));
		start = o.len;
		out_bytes(&o, "tEXt", 4);
		out_bytes(&o, text_keys[x], kl + 1);
		out_bytes(&o, text_values[x], vl);
		if (!o.failed)
			out_be32(&o, crc_update(0xffffffffu, o.buf + start, o.len - start) ^ 0xffffffffu);
	}

	/* IDAT: length patched below */
	out_be32(&o, 0);
	idat_start = o.len;
	out_bytes(&o, "IDAT", 4);
	{
		unsigned char zh[2] = {0x78, 0x01};

		out_bytes(&o, zh, 2);
	}
	bs.bits = 3;				/* BFINAL = 1, BTYPE = 01 (fixed) */
	bs.nbits = 3;

	for (y = 0; y < h && !o.failed; y++)
	{
		const int  *row = c->im->tpixels[y];
		const int  *prev = y > 0 ? c->im->tpixels[y - 1] : NULL;

		/* worst case: 9 bits per byte, plus slack for the bit buffer */
		out_reserve(&o, (size_t) stride * 2 + 64);
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
	out_reserve(&o, 64);
	if (!o.failed)
	{
		bs.p = o.buf + o.len;
		put_literal(&bs, 256);	/* end of block */
		if (bs.nbits > 0)
			*bs.p++ = (unsigned char) bs.bits;
		o.len = bs.p - o.buf;
	}
	out_be32(&o, (uint32_t) ((b << 16) | a));
	if (!o.failed)
	{
		uint32_t	n = (uint32_t) (o.len - idat_start - 4);

		o.buf[idat_start - 4] = n >> 24;
		o.buf[idat_start - 3] = n >> 16;
		o.buf[idat_start - 2] = n >> 8;
		o.buf[idat_start - 1] = n;
		out_be32(&o, crc_update(0xffffffffu, o.buf + idat_start, o.len - idat_start) ^ 0xffffffffu);
	}
	out_be32(&o, 0);
	out_bytes(&o, "IEND", 4);
	out_be32(&o, 0xae426082u);

	if (o.failed)
	{
		free(o.buf);
		return NULL;
	}
	*len = o.len;
	return o.buf;
}
