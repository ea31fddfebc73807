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

/* Writes the signature, IHDR of the given colour type, and tEXt chunks. */
static void
put_header(PngOut *o, int w, int h, int color_type,
		   const char *const *text_keys, const char *const *text_values,
		   int ntext)
{
	static const unsigned char sig[8] = {137, 'P', 'N', 'G', 13, 10, 26, 10};
	unsigned char ihdr[17];
	int			x;

	out_bytes(o, sig, 8);
	memcpy(ihdr, "IHDR", 4);
	ihdr[4] = w >> 24, ihdr[5] = w >> 16, ihdr[6] = w >> 8, ihdr[7] = w;
	ihdr[8] = h >> 24, ihdr[9] = h >> 16, ihdr[10] = h >> 8, ihdr[11] = h;
	ihdr[12] = 8;				/* bit depth */
	ihdr[13] = (unsigned char) color_type;
	ihdr[14] = ihdr[15] = ihdr[16] = 0;
	out_be32(o, 13);
	out_bytes(o, ihdr, 17);
	out_be32(o, crc_update(0xffffffffu, ihdr, 17) ^ 0xffffffffu);

	for (x = 0; x < ntext; x++)
	{
		size_t		kl = strlen(text_keys[x]),
					vl = strlen(text_values[x]);
		size_t		start;

		out_be32(o, (uint32_t) (kl + 1 + vl));
		start = o->len;
		out_bytes(o, "tEXt", 4);
		out_bytes(o, text_keys[x], kl + 1);
		out_bytes(o, text_values[x], vl);
		if (!o->failed)
			out_be32(o, crc_update(0xffffffffu, o->buf + start, o->len - start) ^ 0xffffffffu);
	}
}

/*
 * Encodes the canvas as an 8-bit RGB PNG in one fixed-Huffman block, with
 * ntext tEXt chunks: the fallback for canvases of more colours than the
 * palette encoder (encode_indexed) takes.  Returns malloc'd bytes and
 * their length, or NULL when out of memory.
 */
static unsigned char *
encode_rgb(const ChartCanvas *c, const char *const *text_keys,
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

	put_header(&o, w, h, 2, text_keys, text_values, ntext);

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

/* ---------------------------------------------------------------------
 * Indexed colour with dynamic Huffman codes
 *
 * A chart is a few dozen colours plus antialiasing blends: 749 colours on
 * the reference chart, 95% of its pixels in its ten most frequent.  As
 * palette indices a row is a third of the RGB bytes, and Huffman codes
 * fitted to the image spend 1 to 3 bits on the common indices and matches
 * where fixed codes spend 8 or more: the reference chart shrinks from
 * 282 KB (RGB, fixed codes) to about 50 KB, under matplotlib's 85 KB
 * with zlib, for about the same time, because the matches are still found
 * by comparing with the pixel before and the row above, never searched.
 * Beyond 256 colours the 192 most frequent are kept exactly, then the 64
 * colours farthest from those kept, and each other colour becomes its
 * nearest kept one (the rare edge blends of strokes and
 * glyphs, a step of a few levels of one channel); beyond PAL_MAX_COLORS
 * distinct colours the RGB encoder above is used.
 * ---------------------------------------------------------------------
 */

#define PAL_SLOTS		8192	/* colour hash table, a power of two */
#define PAL_MAX_COLORS	4096	/* at most half full */
#define MAX_BITS		15		/* deflate's longest code */
#define MAX_CL_BITS		7		/* longest code-length code */

/* Colour hash table: colour -> occurrences (of runs) and palette index. */
typedef struct ColorTable
{
	struct
	{
		int32_t		key;		/* colour, or -1 */
		uint32_t	count;		/* next to the key: one cache line */
	}			slot[PAL_SLOTS];
	uint8_t		index[PAL_SLOTS];
	int			n;
	int			slot_of[PAL_MAX_COLORS];	/* insertion order */
} ColorTable;

static inline int
color_slot(const ColorTable *t, int color)
{
	uint32_t	h = ((uint32_t) color * 2654435769u) >> 19;

	while (t->slot[h].key != color && t->slot[h].key != -1)
		h = (h + 1) & (PAL_SLOTS - 1);
	return (int) h;
}

/* Orders slots by falling count, then colour, so palettes are stable. */
static const ColorTable *sort_table;

static int
cmp_count(const void *a, const void *b)
{
	int			sa = *(const int *) a,
				sb = *(const int *) b;

	if (sort_table->slot[sa].count != sort_table->slot[sb].count)
		return sort_table->slot[sa].count > sort_table->slot[sb].count ? -1 : 1;
	return sort_table->slot[sa].key < sort_table->slot[sb].key ? -1 :
		sort_table->slot[sa].key > sort_table->slot[sb].key;
}

/*
 * For candidates 0 .. m-1 (channels as int16: r, g in rg and b, 0 in bz),
 * lowers mind to the squared distance to colour p and sets near to k
 * where p is nearer.  Four at a time with SSE2 (the arrays have room past
 * m); the plain C loop gives the same result.
 */
static void
nearest_update(const int16_t *rg, const int16_t *bz, int32_t *mind,
			   int32_t *near, int m, int p, int k)
{
	int			pr = (p >> 16) & 0xff,
				pg = (p >> 8) & 0xff,
				pb = p & 0xff;
	int			i = 0;

#ifdef __SSE2__
	__m128i		vrg = _mm_set1_epi32(pr | pg << 16),
				vb = _mm_set1_epi32(pb),
				vk = _mm_set1_epi32(k);

	for (; i < m; i += 4)
	{
		__m128i		drg = _mm_sub_epi16(_mm_loadu_si128((const __m128i *) (rg + 2 * i)), vrg),
					db = _mm_sub_epi16(_mm_loadu_si128((const __m128i *) (bz + 2 * i)), vb),
					d = _mm_add_epi32(_mm_madd_epi16(drg, drg), _mm_madd_epi16(db, db)),
					md = _mm_loadu_si128((const __m128i *) (mind + i)),
					nr = _mm_loadu_si128((const __m128i *) (near + i)),
					lt = _mm_cmplt_epi32(d, md);

		_mm_storeu_si128((__m128i *) (mind + i),
						 _mm_or_si128(_mm_and_si128(lt, d), _mm_andnot_si128(lt, md)));
		_mm_storeu_si128((__m128i *) (near + i),
						 _mm_or_si128(_mm_and_si128(lt, vk), _mm_andnot_si128(lt, nr)));
	}
#endif
	for (; i < m; i++)
	{
		int			dr = rg[2 * i] - pr,
					dg = rg[2 * i + 1] - pg,
					db = bz[2 * i] - pb;
		int			d = dr * dr + dg * dg + db * db;

		if (d < mind[i])
		{
			mind[i] = d;
			near[i] = k;
		}
	}
}

/*
 * Chooses the palette (into pal, returning its size) and each colour's
 * index: every colour when there are at most 256, else 192 by frequency
 * and 64 by distance (see above), the others mapped to the nearest of
 * those (squared RGB distance).
 */
static int
choose_palette(ColorTable *t, int *pal)
{
	int			order[PAL_MAX_COLORS];
	int			n = t->n > 256 ? 256 : t->n;
	int			i;

	memcpy(order, t->slot_of, sizeof(int) * t->n);
	sort_table = t;
	qsort(order, t->n, sizeof(int), cmp_count);
	for (i = 0; i < n; i++)
	{
		pal[i] = t->slot[order[i]].key;
		t->index[order[i]] = (uint8_t) i;
	}
	if (t->n > 256)
	{
		/*
		 * The last 64 entries go to the colours farthest from all kept
		 * ones, so that a rare but distinct colour (a single red anomaly
		 * dot among thousands of blue blends) stays exact.  Each other
		 * colour tracks its nearest kept one as entries are added, which
		 * is then its index.  Channels in separate arrays and the loop
		 * over colours innermost let the compiler vectorise it.
		 */
		static int16_t rg[2 * PAL_MAX_COLORS + 8],	/* r, g per candidate */
					bz[2 * PAL_MAX_COLORS + 8];	/* b, 0 per candidate */
		static int32_t mind[PAL_MAX_COLORS + 4],
					near[PAL_MAX_COLORS + 4];
		int			m = t->n - 192; /* candidates, entries 0 .. m-1 */
		int			kept;

		for (i = 0; i < m + 4; i++)
		{
			int			p = i < m ? t->slot[order[192 + i]].key : 0;

			rg[2 * i] = (int16_t) ((p >> 16) & 0xff);
			rg[2 * i + 1] = (int16_t) ((p >> 8) & 0xff);
			bz[2 * i] = (int16_t) (p & 0xff);
			bz[2 * i + 1] = 0;
			mind[i] = INT32_MAX;
			near[i] = 0;
		}
		for (kept = 0;; kept++)
		{
			int			far = 0;

			if (kept == 256)
				break;
			if (kept >= 192)
			{
				/* the farthest candidate left becomes entry kept */
				int			o;

				for (i = 1; i < m; i++)
					if (mind[i] > mind[far])
						far = i;
				if (m == 0 || mind[far] == 0)
					break;
				o = order[192 + far];
				pal[kept] = t->slot[o].key;
				t->index[o] = (uint8_t) kept;
				/* drop it from the candidates */
				m--;
				order[192 + far] = order[192 + m];
				rg[2 * far] = rg[2 * m];
				rg[2 * far + 1] = rg[2 * m + 1];
				bz[2 * far] = bz[2 * m];
				mind[far] = mind[m];
				near[far] = near[m];
			}
			nearest_update(rg, bz, mind, near, m, pal[kept], kept);
		}
		for (i = 0; i < m; i++)
			t->index[order[192 + i]] = (uint8_t) near[i];
		n = kept;
	}
	return n;
}

/*
 * Deflate tokens: a literal (len 0), either the filter byte 0 or the
 * palette index of a colour table slot (SLOT_FLAG set: the index is only
 * known once every colour is counted), or a match of len 3..258 bytes at
 * distance 1 (far 0) or one row back (far 1).
 */
#define SLOT_FLAG			0x8000
#define TOKEN_LIT(v)		((uint32_t) (v))
#define TOKEN_MATCH(l, far)	((uint32_t) (l) << 16 | (uint32_t) (far) << 15)
#define TOKEN_LEN(t)		((t) >> 16)
#define TOKEN_FAR(t)		(((t) >> 15) & 1)

typedef struct TokenBuf
{
	uint32_t   *t;
	size_t		n;
	size_t		cap;
	bool		failed;
	uint32_t	filter_freq;	/* filter byte literals */
	uint32_t	slot_freq[PAL_SLOTS];	/* colour literals by slot */
	uint32_t	len_freq[259][2];	/* matches by length and distance */
} TokenBuf;

static inline void
add_token(TokenBuf *tb, uint32_t tok)
{
	if (TOKEN_LEN(tok) == 0)
	{
		if (tok & SLOT_FLAG)
			tb->slot_freq[tok & (PAL_SLOTS - 1)]++;
		else
			tb->filter_freq++;
	}
	else
		tb->len_freq[TOKEN_LEN(tok)][TOKEN_FAR(tok)]++;
	if (tb->n == tb->cap)
	{
		size_t		cap = tb->cap * 2 + 4096;
		uint32_t   *nt = tb->failed ? NULL : realloc(tb->t, cap * sizeof(uint32_t));

		if (nt == NULL)
		{
			tb->failed = true;
			return;
		}
		tb->t = nt;
		tb->cap = cap;
	}
	tb->t[tb->n++] = tok;
}

/* Adds matches covering len (>= 3) bytes, no piece shorter than 3. */
static void
add_matches(TokenBuf *tb, int len, int far)
{
	while (len > 0)
	{
		int			n = len > 258 ? 258 : len;

		if (len - n > 0 && len - n < 3)
			n = len - 3;
		add_token(tb, TOKEN_MATCH(n, far));
		len -= n;
	}
}

/*
 * Adler-32 sums of n bytes (n <= 4096) started from a = 0, b = 0: *s is
 * the sum of the bytes, *bsum the sum of the running sums.  Sixteen bytes
 * at a time: a block adds 16 times the running sum before it plus each
 * byte weighted by 16 - its place, so no sum waits on the byte before
 * (SSE2: widened to 16 bits and multiplied-added in pairs).
 */
static void
bytes_adler(const uint8_t *p, int n, uint64_t *s, uint64_t *bsum)
{
	uint64_t	a = 0,
				b = 0;
	int			i = 0;

#ifdef __SSE2__
	{
		const __m128i zero = _mm_setzero_si128();
		const __m128i w_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
		const __m128i w_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
		__m128i		va = zero,	/* byte sums, two 64-bit lanes */
					vpa = zero, /* sum of va before each block */
					vw = zero;	/* weighted sums, four 32-bit lanes */
		uint64_t	lanes[2];
		uint32_t	wl[4];

		for (; i + 16 <= n; i += 16)
		{
			__m128i		v = _mm_loadu_si128((const __m128i *) (p + i));

			vpa = _mm_add_epi64(vpa, va);
			va = _mm_add_epi64(va, _mm_sad_epu8(v, zero));
			vw = _mm_add_epi32(vw, _mm_add_epi32(
								   _mm_madd_epi16(_mm_unpacklo_epi8(v, zero), w_lo),
								   _mm_madd_epi16(_mm_unpackhi_epi8(v, zero), w_hi)));
		}
		_mm_storeu_si128((__m128i *) lanes, va);
		a = lanes[0] + lanes[1];
		_mm_storeu_si128((__m128i *) lanes, vpa);
		b = 16 * (lanes[0] + lanes[1]);
		_mm_storeu_si128((__m128i *) wl, vw);
		b += (uint64_t) wl[0] + wl[1] + wl[2] + wl[3];
	}
#else
	for (; i + 16 <= n; i += 16)
	{
		uint32_t	s16 = 0,
					w16 = 0;
		int			k;

		for (k = 0; k < 16; k++)
		{
			s16 += p[i + k];
			w16 += (uint32_t) (16 - k) * p[i + k];
		}
		b += 16 * a + w16;
		a += s16;
	}
#endif
	for (; i < n; i++)
	{
		a += p[i];
		b += a;
	}
	*s = a % 65521;
	*bsum = b % 65521;
}

/*
 * Huffman code lengths of at most maxbits for n symbols of the given
 * frequencies.  Fewer than two used symbols get two codes of length 1
 * (inflate rejects incomplete codes); a too deep tree is rebuilt with
 * halved frequencies, which only ever happens for pathological images.
 */
static void
huffman_lengths(const uint32_t *freq_in, int n, int maxbits, uint8_t *len)
{
	uint32_t	freq[320];
	int			sym[320];
	uint64_t	weight[640];
	int			parent[640];
	int			depth[640];
	int			m,
				i;

	memcpy(freq, freq_in, sizeof(uint32_t) * n);
	for (m = 0, i = 0; i < n; i++)
		m += freq[i] > 0;
	for (i = 0; m < 2 && i < n; i++)
		if (freq[i] == 0)
			freq[i] = 1, m++;
	for (;;)
	{
		int			leaf = 0,
					node,
					next,
					maxd = 0;

		m = 0;
		for (i = 0; i < n; i++)
			if (freq[i] > 0)
				sym[m++] = i;
		/* leaves by rising frequency, then symbol (insertion sort: n <= 288) */
		for (i = 1; i < m; i++)
		{
			int			s = sym[i],
						j = i;

			while (j > 0 && (freq[sym[j - 1]] > freq[s] ||
							 (freq[sym[j - 1]] == freq[s] && sym[j - 1] > s)))
			{
				sym[j] = sym[j - 1];
				j--;
			}
			sym[j] = s;
		}
		for (i = 0; i < m; i++)
			weight[i] = freq[sym[i]];
		/* two queues: leaves 0..m-1 and internal nodes m.. in creation order */
		node = m;
		next = m;
		while (node < 2 * m - 1)
		{
			int			pick[2],
						k;

			for (k = 0; k < 2; k++)
			{
				if (leaf < m && (next >= node || weight[leaf] <= weight[next]))
					pick[k] = leaf++;
				else
					pick[k] = next++;
			}
			weight[node] = weight[pick[0]] + weight[pick[1]];
			parent[pick[0]] = parent[pick[1]] = node;
			node++;
		}
		depth[2 * m - 2] = 0;
		for (i = 2 * m - 3; i >= 0; i--)
		{
			depth[i] = depth[parent[i]] + 1;
			if (i < m && depth[i] > maxd)
				maxd = depth[i];
		}
		if (maxd <= maxbits)
		{
			memset(len, 0, n);
			for (i = 0; i < m; i++)
				len[sym[i]] = (uint8_t) depth[i];
			return;
		}
		for (i = 0; i < n; i++)
			if (freq[i] > 0)
				freq[i] = (freq[i] >> 1) | 1;
	}
}

/* Canonical codes of the given lengths, bit-reversed for LSB-first output. */
static void
huffman_codes(const uint8_t *len, int n, uint16_t *code)
{
	int			bl_count[MAX_BITS + 1] = {0};
	int			next[MAX_BITS + 2];
	int			i,
				b,
				c = 0;

	for (i = 0; i < n; i++)
		bl_count[len[i]]++;
	bl_count[0] = 0;
	for (b = 1; b <= MAX_BITS; b++)
	{
		c = (c + bl_count[b - 1]) << 1;
		next[b] = c;
	}
	for (i = 0; i < n; i++)
	{
		int			l = len[i],
					v,
					rev = 0;

		if (l == 0)
			continue;
		v = next[l]++;
		for (b = 0; b < l; b++)
			rev |= ((v >> b) & 1) << (l - 1 - b);
		code[i] = (uint16_t) rev;
	}
}

/* Length symbol (257..285), extra bits and their count of each length. */
static uint16_t len_sym[259];
static uint8_t len_xbits[259];
static uint8_t len_xn[259];

static void
init_len_syms(void)
{
	static const uint16_t base[] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19,
		23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
	static const uint8_t extra[] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2,
		2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
	int			l,
				i = 0;

	for (l = 3; l <= 258; l++)
	{
		while (i < 28 && base[i + 1] <= l)
			i++;
		len_sym[l] = (uint16_t) (257 + i);
		len_xbits[l] = (uint8_t) (l - base[i]);
		len_xn[l] = extra[i];
	}
}

/* Distance symbol, extra bits and their count of a distance (1..32768). */
static void
dist_sym(int dist, int *sym, uint32_t *xbits, int *xn)
{
	static const uint16_t base[] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49,
		65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097,
		6145, 8193, 12289, 16385, 24577};
	static const uint8_t extra[] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5,
		5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
	int			d = 29;

	while (base[d] > dist)
		d--;
	*sym = d;
	*xbits = (uint32_t) (dist - base[d]);
	*xn = extra[d];
}

/*
 * Writes the dynamic block header: HLIT, HDIST, HCLEN, the code-length
 * code, and the literal/length and distance code lengths run-length coded
 * (16: repeat the previous 3-6 times, 17 and 18: 3-10 and 11-138 zeros).
 */
static void
put_dynamic_header(BitSink *bs, const uint8_t *ll_len, int hlit,
				   const uint8_t *d_len, int hdist)
{
	static const uint8_t order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11,
	4, 12, 3, 13, 2, 14, 1, 15};
	uint8_t		all[320];
	uint16_t	rle[320];		/* symbol | extra << 8 */
	uint32_t	cl_freq[19] = {0};
	uint8_t		cl_len[19];
	uint16_t	cl_code[19] = {0};
	int			n = hlit + hdist,
				nrle = 0,
				hclen = 19,
				i;

	memcpy(all, ll_len, hlit);
	memcpy(all + hlit, d_len, hdist);
	for (i = 0; i < n;)
	{
		int			v = all[i],
					run = 1;

		while (i + run < n && all[i + run] == v)
			run++;
		if (v == 0 && run >= 11)
		{
			run = run > 138 ? 138 : run;
			rle[nrle++] = (uint16_t) (18 | (run - 11) << 8);
		}
		else if (v == 0 && run >= 3)
			rle[nrle++] = (uint16_t) (17 | (run - 3) << 8);
		else if (v != 0 && run >= 4)
		{
			run = run > 7 ? 7 : run;
			rle[nrle++] = (uint16_t) v;
			rle[nrle++] = (uint16_t) (16 | (run - 4) << 8);
		}
		else
		{
			run = 1;
			rle[nrle++] = (uint16_t) v;
		}
		i += run;
	}
	for (i = 0; i < nrle; i++)
		cl_freq[rle[i] & 0xff]++;
	huffman_lengths(cl_freq, 19, MAX_CL_BITS, cl_len);
	huffman_codes(cl_len, 19, cl_code);
	while (hclen > 4 && cl_len[order[hclen - 1]] == 0)
		hclen--;

	put_bits(bs, 1 | 2 << 1, 3);	/* BFINAL = 1, BTYPE = 10 (dynamic) */
	put_bits(bs, (uint32_t) (hlit - 257), 5);
	put_bits(bs, (uint32_t) (hdist - 1), 5);
	put_bits(bs, (uint32_t) (hclen - 4), 4);
	for (i = 0; i < hclen; i++)
		put_bits(bs, cl_len[order[i]], 3);
	for (i = 0; i < nrle; i++)
	{
		int			sym = rle[i] & 0xff,
					extra = rle[i] >> 8;

		put_bits(bs, cl_code[sym], cl_len[sym]);
		if (sym == 16)
			put_bits(bs, (uint32_t) extra, 2);
		else if (sym == 17)
			put_bits(bs, (uint32_t) extra, 3);
		else if (sym == 18)
			put_bits(bs, (uint32_t) extra, 7);
	}
}

/*
 * Writes the tokens as one dynamic-Huffman deflate block with zlib framing
 * (adler: the Adler-32 of the raw bytes), into o.
 */
static void
put_deflate(PngOut *o, const TokenBuf *tb, const uint8_t *slot_index,
			int stride, uint8_t *img, size_t img_len)
{
	size_t		pos = 0;
	uint64_t	a = 1,
				b = 0;
	uint32_t	ll_freq[286] = {0},
				d_freq[30] = {0};
	uint8_t		ll_len[286],
				d_len[30];
	uint16_t	ll_code[286] = {0},
				d_code[30] = {0};
	int			dsym[2],
				dxn[2],
				hlit = 286,
				hdist = 30;
	uint32_t	dxb[2];
	size_t		i;
	BitSink		bs = {0};

	dist_sym(1, &dsym[0], &dxb[0], &dxn[0]);
	dist_sym(stride, &dsym[1], &dxb[1], &dxn[1]);
	ll_freq[0] = tb->filter_freq;
	for (i = 0; i < PAL_SLOTS; i++)
		ll_freq[slot_index[i]] += tb->slot_freq[i];
	for (i = 3; i <= 258; i++)
	{
		ll_freq[len_sym[i]] += tb->len_freq[i][0] + tb->len_freq[i][1];
		d_freq[dsym[0]] += tb->len_freq[i][0];
		d_freq[dsym[1]] += tb->len_freq[i][1];
	}
	ll_freq[256] = 1;			/* end of block */
	huffman_lengths(ll_freq, 286, MAX_BITS, ll_len);
	huffman_lengths(d_freq, 30, MAX_BITS, d_len);
	huffman_codes(ll_len, 286, ll_code);
	huffman_codes(d_len, 30, d_code);
	while (hlit > 257 && ll_len[hlit - 1] == 0)
		hlit--;
	while (hdist > 1 && d_len[hdist - 1] == 0)
		hdist--;

	/* at most 48 bits a token, plus the header */
	out_reserve(o, tb->n * 6 + 1024);
	if (o->failed)
		return;
	{
		unsigned char zh[2] = {0x78, 0x01};

		out_bytes(o, zh, 2);
	}
	bs.p = o->buf + o->len;
	put_dynamic_header(&bs, ll_len, hlit, d_len, hdist);
	for (i = 0; i < tb->n; i++)
	{
		uint32_t	t = tb->t[i];
		int			l = (int) TOKEN_LEN(t);

		if (l == 0)
		{
			int			v = (t & SLOT_FLAG) ? slot_index[t & (PAL_SLOTS - 1)] : 0;

			put_bits(&bs, ll_code[v], ll_len[v]);
			img[pos++] = (uint8_t) v;
		}
		else
		{
			int			ls = len_sym[l],
						f = (int) TOKEN_FAR(t);

			/* the bytes, for the Adler-32: what inflate will rebuild */
			if (f == 0)
				memset(img + pos, img[pos - 1], l);
			else if (l <= stride)
				memcpy(img + pos, img + pos - stride, l);
			else
			{
				int			k;

				for (k = 0; k < l; k++)
					img[pos + k] = img[pos + k - stride];
			}
			pos += l;

			put_bits(&bs, ll_code[ls] | (uint32_t) len_xbits[l] << ll_len[ls],
					 ll_len[ls] + len_xn[l]);
			put_bits(&bs, d_code[dsym[f]] | dxb[f] << d_len[dsym[f]],
					 d_len[dsym[f]] + dxn[f]);
		}
	}
	put_bits(&bs, ll_code[256], ll_len[256]);
	if (bs.nbits > 0)
		*bs.p++ = (unsigned char) bs.bits;
	o->len = bs.p - o->buf;
	/* Adler-32 in blocks short enough that the sums cannot overflow */
	for (i = 0; i < img_len; i += 4096)
	{
		uint64_t	s,
					bs_;
		int			n = (int) (img_len - i < 4096 ? img_len - i : 4096);

		bytes_adler(img + i, n, &s, &bs_);
		b = (b + (uint64_t) n * a + bs_) % 65521;
		a = (a + s) % 65521;
	}
	out_be32(o, (uint32_t) ((b << 16) | a));
}

/* The colour table slot of colour p, counted; -1 past PAL_MAX_COLORS. */
static inline int
count_color(ColorTable *t, int p)
{
	int			h = color_slot(t, p);

	if (t->slot[h].key == -1)
	{
		if (t->n >= PAL_MAX_COLORS)
			return -1;
		t->slot[h].key = p;
		t->slot_of[t->n++] = h;
	}
	t->slot[h].count++;
	return h;
}

/* Adds n (1 or 2) literals of colour p; false past PAL_MAX_COLORS. */
static inline bool
add_color_literals(TokenBuf *tb, ColorTable *t, int p, int n)
{
	int			h = count_color(t, p);

	if (h < 0)
		return false;
	while (n-- > 0)
		add_token(tb, TOKEN_LIT(SLOT_FLAG | h));
	return true;
}

/*
 * The one pass over the canvas: tokens straight from comparing pixels, as
 * the RGB encoder does, with colour literals standing for their colour
 * table slot; colours are counted as they are met.  A row that repeats the
 * row above is one match; otherwise runs that repeat the row above or the
 * pixel before become matches (3 bytes or more) and the rest literals.
 * false when out of memory or past PAL_MAX_COLORS colours (*too_many).
 */
static bool
scan_canvas(const ChartCanvas *c, ColorTable *t, TokenBuf *tb, bool *too_many)
{
	int			w = c->width,
				stride = w + 1,
				x,
				y;

	for (y = 0; y < c->height && !tb->failed; y++)
	{
		const int  *row = c->im->tpixels[y];
		const int  *prev = y > 0 ? c->im->tpixels[y - 1] : NULL;

		if (prev && same_prefix(row, prev, w) == w)
		{
			/* the whole row, filter byte included, repeats the one above */
			add_matches(tb, stride, 1);
			continue;
		}
		add_token(tb, TOKEN_LIT(0));	/* filter type None */
		x = 0;
		while (x < w)
		{
			int			p = row[x],
						n;

			if (prev && prev[x] == p)
			{
				n = same_prefix(row + x, prev + x, w - x);
				if (n >= 3)
					add_matches(tb, n, 1);
				else if (!add_color_literals(tb, t, p, 1) ||
						 (n == 2 && !add_color_literals(tb, t, row[x + 1], 1)))
					goto too_many;
				x += n;
				continue;
			}
			/* a run of p that does not repeat the row above */
			for (n = 1; x + n < w && row[x + n] == p && !(prev && prev[x + n] == p); n++)
				;
			if (x > 0 && row[x - 1] == p && n >= 3)
				add_matches(tb, n, 0);
			else if (n >= 4)
			{
				if (!add_color_literals(tb, t, p, 1))
					goto too_many;
				add_matches(tb, n - 1, 0);
			}
			else if (!add_color_literals(tb, t, p, n))
				goto too_many;
			x += n;
		}
	}
	return !tb->failed;

too_many:
	*too_many = true;
	return false;
}

/*
 * Encodes the canvas as an indexed-colour PNG (see above); NULL with
 * *too_many set when it has more colours than the palette path takes,
 * NULL alone when out of memory.
 */
static unsigned char *
encode_indexed(const ChartCanvas *c, const char *const *text_keys,
			   const char *const *text_values, int ntext, size_t *len,
			   bool *too_many)
{
	PngOut		o = {0};
	ColorTable *t = malloc(sizeof(ColorTable));
	TokenBuf   *tb = calloc(1, sizeof(TokenBuf));
	int			pal[256];
	int			npal,
				w = c->width,
				h = c->height,
				stride = w + 1;
	size_t		img_len = (size_t) stride * h;
	uint8_t    *img = malloc(img_len);
	size_t		idat_start;

	*too_many = false;
	if (t == NULL || tb == NULL || img == NULL)
		goto fail;
	{
		int			i;

		for (i = 0; i < PAL_SLOTS; i++)
		{
			t->slot[i].key = -1;
			t->slot[i].count = 0;
		}
	}
	memset(t->index, 0, sizeof(t->index));
	t->n = 0;
	/* about one token per 3 pixels on dense charts: grow rarely */
	tb->cap = (size_t) w * h / 4 + 1024;
	tb->t = malloc(tb->cap * sizeof(uint32_t));
	if (tb->t == NULL || !scan_canvas(c, t, tb, too_many))
		goto fail;
	npal = choose_palette(t, pal);

	o.cap = (size_t) w * h / 8 + 65536;
	o.buf = malloc(o.cap);
	if (o.buf == NULL)
		goto fail;
	put_header(&o, w, h, 3, text_keys, text_values, ntext);
	{
		unsigned char plte[4 + 3 * 256];
		int			i;

		memcpy(plte, "PLTE", 4);
		for (i = 0; i < npal; i++)
		{
			plte[4 + 3 * i] = (unsigned char) (pal[i] >> 16);
			plte[5 + 3 * i] = (unsigned char) (pal[i] >> 8);
			plte[6 + 3 * i] = (unsigned char) pal[i];
		}
		out_be32(&o, (uint32_t) (3 * npal));
		out_bytes(&o, plte, 4 + 3 * npal);
		out_be32(&o, crc_update(0xffffffffu, plte, 4 + 3 * npal) ^ 0xffffffffu);
	}
	out_be32(&o, 0);			/* IDAT length, patched below */
	idat_start = o.len;
	out_bytes(&o, "IDAT", 4);
	put_deflate(&o, tb, t->index, stride, img, img_len);
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
		goto fail;
	free(t);
	if (tb)
		free(tb->t);
	free(tb);
	free(img);
	*len = o.len;
	return o.buf;

fail:
	free(t);
	if (tb)
		free(tb->t);
	free(tb);
	free(img);
	free(o.buf);
	return NULL;
}

/*
 * Encodes the canvas as a PNG with ntext tEXt chunks: indexed colour when
 * the canvas has at most PAL_MAX_COLORS colours (every chart so far), RGB
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
	{
		init_tables();
		init_length_codes();
		init_len_syms();
	}
	png = encode_indexed(c, text_keys, text_values, ntext, len, &too_many);
	if (png == NULL && too_many)
		png = encode_rgb(c, text_keys, text_values, ntext, len);
	return png;
}
