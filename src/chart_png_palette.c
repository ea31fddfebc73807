/*
 * chart_png_palette.c
 *		The indexed-colour PNG encoder for chart canvases: a palette of at
 *		most 256 colours and one deflate block with Huffman codes fitted to
 *		the image.
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
 * nearest kept one (the rare edge blends of strokes and glyphs, a step of
 * a few levels of one channel).  Beyond PAL_MAX_COLORS distinct colours, or
 * when a colour would be further than PAL_MAX_DIST2 from its entry,
 * chart_png_encode uses the lossless RGB encoder (chart_png_rgb.c).
 * Pure C: see chart.h.
 */
#include <stdlib.h>
#include <string.h>

#include "chart_png.h"

#define PAL_SLOTS		8192	/* colour hash table, a power of two */
#define PAL_MAX_COLORS	4096	/* at most half full */

/*
 * The largest squared RGB distance from a colour to its palette entry
 * that the palette may show.  Charts stay far below it (41 to 75 on the
 * reference and test charts at 640 x 480 to 4000 x 2000: a few levels of
 * one channel); a canvas beyond it (photo-like content) is encoded as RGB
 * instead, without loss.
 */
#define PAL_MAX_DIST2	300
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
	uint32_t	lit_code[PAL_SLOTS];	/* used slots: see put_deflate */
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

/*
 * Sorts n keys ascending (tmp: room for n more), merging runs bottom-up:
 * the sort keys of the palette and the Huffman codes pack every field into
 * one integer, compared inline (qsort's callbacks were 2% of a chart).
 */
static void
sort_u64(uint64_t *a, uint64_t *tmp, int n)
{
	uint64_t   *src = a,
			   *dst = tmp;
	int			width;

	for (width = 1; width < n; width *= 2)
	{
		int			lo;

		for (lo = 0; lo < n; lo += 2 * width)
		{
			int			mid = lo + width < n ? lo + width : n,
						hi = lo + 2 * width < n ? lo + 2 * width : n,
						i = lo,
						j = mid,
						k = lo;

			while (i < mid && j < hi)
				dst[k++] = src[j] < src[i] ? src[j++] : src[i++];
			while (i < mid)
				dst[k++] = src[i++];
			while (j < hi)
				dst[k++] = src[j++];
		}
		{
			uint64_t   *x = src;

			src = dst;
			dst = x;
		}
	}
	if (src != a)
		memcpy(a, src, sizeof(uint64_t) * n);
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
 * those (squared RGB distance); -1 when a colour would be further than
 * PAL_MAX_DIST2 from its entry.
 */
static int
choose_palette(ColorTable *t, int *pal)
{
	int			order[PAL_MAX_COLORS];
	uint64_t	keys[2 * PAL_MAX_COLORS];
	int			n = t->n > 256 ? 256 : t->n;
	int			i;

	/*
	 * Slots by falling count, then colour, so palettes are stable: a count
	 * is below 2^24 (4000 x 4000 pixels at most), a colour 31 bits.
	 */
	for (i = 0; i < t->n; i++)
	{
		int			sl = t->slot_of[i];

		keys[i] = (uint64_t) (0xffffffu - t->slot[sl].count) << 31 |
			(uint32_t) t->slot[sl].key;
	}
	sort_u64(keys, keys + PAL_MAX_COLORS, t->n);
	for (i = 0; i < t->n; i++)
		order[i] = color_slot(t, (int) (keys[i] & 0x7fffffff));
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
		{
			if (mind[i] > PAL_MAX_DIST2)
				return -1;
			t->index[order[192 + i]] = (uint8_t) near[i];
		}
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

/*
 * Makes room for more tokens; false (and tb->failed) when out of memory.
 * A row takes at most one token per byte, so scan_canvas reserves a row's
 * worth before each row and add_token need not check.
 */
static bool
reserve_tokens(TokenBuf *tb, size_t more)
{
	if (tb->n + more > tb->cap)
	{
		size_t		cap = tb->cap * 2 + more + 4096;
		uint32_t   *nt = tb->failed ? NULL : realloc(tb->t, cap * sizeof(uint32_t));

		if (nt == NULL)
		{
			tb->failed = true;
			return false;
		}
		tb->t = nt;
		tb->cap = cap;
	}
	return true;
}

/* Appends a token, in room reserved by reserve_tokens. */
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
	tb->t[tb->n++] = tok;
}

/*
 * Adds matches covering len (>= 3) bytes, no piece shorter than 3; inline
 * for the usual single match (the call was 1.6% of render_metric_chart).
 */
static inline void
add_matches(TokenBuf *tb, int len, int far)
{
	if (len <= 258)
	{
		add_token(tb, TOKEN_MATCH(len, far));
		return;
	}
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
 * Adds n bytes to the Adler-32 sums *a and *b, in blocks short enough that
 * the sums cannot overflow.
 */
static void
adler_rows(const uint8_t *p, int n, uint64_t *a, uint64_t *b)
{
	int			i;

	for (i = 0; i < n; i += 4096)
	{
		uint64_t	s,
					bs;
		int			k = n - i < 4096 ? n - i : 4096;

		bytes_adler(p + i, k, &s, &bs);
		*b = (*b + (uint64_t) k * *a + bs) % 65521;
		*a = (*a + s) % 65521;
	}
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
	uint64_t	keys[640];
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

		/* leaves by rising frequency, then symbol */
		m = 0;
		for (i = 0; i < n; i++)
			if (freq[i] > 0)
				keys[m++] = (uint64_t) freq[i] << 9 | (uint64_t) i;
		sort_u64(keys, keys + 320, m);
		for (i = 0; i < m; i++)
			sym[i] = (int) (keys[i] & 0x1ff);
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
static bool len_syms_ready = false;
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
 * and the Adler-32 of the raw bytes, into o.  rows: room for two rows of
 * stride bytes, where the bytes inflate will rebuild are rebuilt for the
 * Adler-32 row by row (no token crosses the end of a row: see
 * scan_canvas); the whole image rebuilt in one buffer was 0.7 MB of
 * writes and reads at 1200 x 600, out of the caches.
 */
static void
put_deflate(PngOut *o, const TokenBuf *tb, ColorTable *t,
			int stride, uint8_t *rows)
{
	const uint8_t *slot_index = t->index;
	uint8_t    *cur = rows,		/* the row being rebuilt */
			   *dst = rows,		/* its next byte */
			   *end = rows + stride;
	ptrdiff_t	up = stride;	/* from cur to the row above */
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
	uint32_t	filter_code;
	struct
	{
		uint64_t	bits;
		int			n;
	}			match_code[259][2];

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

	/*
	 * The block's exact size in bits, less the header (at most 19 * 3 +
	 * 316 * 14 bits): reserving it once keeps the output buffer small
	 * enough to stay off mmap (an mmap'd buffer page-faulted afresh cost
	 * every chart 0.5 ms).
	 */
	{
		uint64_t	nbits = 0;
		int			l;

		for (i = 0; i < 286; i++)
			nbits += (uint64_t) ll_freq[i] * ll_len[i];
		for (l = 3; l <= 258; l++)
		{
			nbits += (uint64_t) tb->len_freq[l][0] * (len_xn[l] + d_len[dsym[0]] + dxn[0]);
			nbits += (uint64_t) tb->len_freq[l][1] * (len_xn[l] + d_len[dsym[1]] + dxn[1]);
		}
		chart_png_reserve(o, nbits / 8 + 1024);
	}
	if (o->failed)
		return;

	/*
	 * Each token's bits looked up whole: a colour slot's code, length and
	 * palette index in one word, a match's four fields in one string of
	 * bits (a tenth of the encoder's instructions went to assembling them).
	 */
	filter_code = ll_code[0] | (uint32_t) ll_len[0] << 16;
	for (i = 0; i < (size_t) t->n; i++)
	{
		int			v = slot_index[t->slot_of[i]];

		t->lit_code[t->slot_of[i]] = ll_code[v] | (uint32_t) ll_len[v] << 16 |
			(uint32_t) v << 24;
	}
	for (i = 3; i <= 258; i++)
	{
		int			f;

		for (f = 0; f < 2; f++)
		{
			int			ls = len_sym[i],
						n = ll_len[ls];
			uint64_t	bits = ll_code[ls] | (uint64_t) len_xbits[i] << n;

			n += len_xn[i];
			bits |= (uint64_t) d_code[dsym[f]] << n;
			n += d_len[dsym[f]];
			bits |= (uint64_t) dxb[f] << n;
			match_code[i][f].bits = bits;
			match_code[i][f].n = n + dxn[f];
		}
	}
	{
		unsigned char zh[2] = {0x78, 0x01};

		chart_png_bytes(o, zh, 2);
	}
	bs.p = o->buf + o->len;
	put_dynamic_header(&bs, ll_len, hlit, d_len, hdist);
	for (i = 0; i < tb->n; i++)
	{
		uint32_t	tok = tb->t[i];
		int			l = (int) TOKEN_LEN(tok);

		if (l == 0)
		{
			uint32_t	e = (tok & SLOT_FLAG) ? t->lit_code[tok & (PAL_SLOTS - 1)] :
				filter_code;

			put_bits(&bs, e & 0xffff, (e >> 16) & 0xff);
			*dst++ = (uint8_t) (e >> 24);
		}
		else
		{
			int			f = (int) TOKEN_FAR(tok);

			/* the bytes, for the Adler-32: what inflate will rebuild */
			if (f == 0)
				memset(dst, dst[-1], l);
			else
				memcpy(dst, dst + up, l);
			dst += l;
			put_bits(&bs, match_code[l][f].bits, match_code[l][f].n);
		}
		if (dst == end)
		{
			/* the row is done: the other buffer is the next row's */
			adler_rows(cur, stride, &a, &b);
			cur += up;
			up = -up;
			dst = cur;
			end = cur + stride;
		}
	}
	put_bits(&bs, ll_code[256], ll_len[256]);
	if (bs.nbits > 0)
		*bs.p++ = (unsigned char) bs.bits;
	o->len = bs.p - o->buf;
	chart_png_be32(o, (uint32_t) ((b << 16) | a));
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
 * pixel before become matches (3 bytes or more) and the rest literals,
 * so no token crosses the end of a row (put_deflate relies on it).  none:
 * a row of -1, which no pixel is (libgd's alpha is 7 bits), standing for
 * the row above the first, so the loops need no test for it.  false when
 * out of memory or past PAL_MAX_COLORS colours (*too_many).
 */
static bool
scan_canvas(const ChartCanvas *c, ColorTable *t, TokenBuf *tb,
			const int *none, bool *too_many)
{
	int			w = c->width,
				stride = w + 1,
				x,
				y;

	for (y = 0; y < c->height; y++)
	{
		const int  *row = c->im->tpixels[y];
		const int  *prev = y > 0 ? c->im->tpixels[y - 1] : none;

		if (!reserve_tokens(tb, (size_t) stride + 1))
			return false;

		if (y > 0 && stride >= 3 && same_prefix(row, prev, w) == w)
		{
			/*
			 * The whole row, filter byte included, repeats the one above (a
			 * row of one pixel is 2 bytes, shorter than deflate's shortest
			 * match: it goes as literals below).
			 */
			add_matches(tb, stride, 1);
			continue;
		}
		add_token(tb, TOKEN_LIT(0));	/* filter type None */
		x = 0;
		while (x < w)
		{
			int			p = row[x],
						n;

			if (prev[x] == p)
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
			for (n = 1; x + n < w && row[x + n] == p && prev[x + n] != p; n++)
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
 * The large buffer of an encoding, the tokens (about 0.3 MB at 1200 x
 * 600), is kept for the next chart when it is at most SCRATCH_KEEP bytes:
 * allocating it afresh cost the reference chart a tenth of its time in
 * page faults.
 */
#define SCRATCH_KEEP	(4 * 1024 * 1024)

static uint32_t *kept_tokens;
static size_t kept_tokens_cap;	/* entries */

/*
 * The colour table and the token counts (150 KB) are static for the same
 * reason: malloc'd per chart, their pages were faulted in afresh each time
 * (glibc gives such blocks back to the system when they are freed).
 */
static ColorTable color_table;
static TokenBuf token_buf;

/* Keeps or frees the token buffer of an encoding (see SCRATCH_KEEP). */
static void
release_scratch(uint32_t *tokens, size_t tokens_cap)
{
	if (tokens && tokens_cap * sizeof(uint32_t) <= SCRATCH_KEEP &&
		tokens_cap >= kept_tokens_cap)
	{
		if (kept_tokens != tokens)
			free(kept_tokens);
		kept_tokens = tokens;
		kept_tokens_cap = tokens_cap;
	}
	else if (tokens != kept_tokens)
		free(tokens);
}

/*
 * Encodes the canvas as an indexed-colour PNG (see above); NULL with
 * *too_many set when it has more colours than a palette shows faithfully
 * (PAL_MAX_COLORS, PAL_MAX_DIST2), NULL alone when out of memory.
 */
unsigned char *
chart_png_encode_palette(const ChartCanvas *c, const char *const *text_keys,
						 const char *const *text_values, int ntext,
						 size_t *len, bool *too_many)
{
	PngOut		o = {0};
	ColorTable *t = &color_table;
	TokenBuf   *tb = &token_buf;
	int			pal[256];
	int			npal,
				w = c->width,
				h = c->height,
				stride = w + 1;
	uint8_t    *rows = malloc(2 * (size_t) stride);
	int		   *none = malloc(sizeof(int) * w);
	size_t		idat_start;

	*too_many = false;
	memset(tb, 0, sizeof(*tb));
	if (!len_syms_ready)
	{
		init_len_syms();
		len_syms_ready = true;
	}
	if (rows == NULL || none == NULL)
		goto fail;
	memset(none, 0xff, sizeof(int) * w);	/* -1 */
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
	if (kept_tokens_cap >= tb->cap)
	{
		tb->t = kept_tokens;
		tb->cap = kept_tokens_cap;
		kept_tokens = NULL;
		kept_tokens_cap = 0;
	}
	else
		tb->t = malloc(tb->cap * sizeof(uint32_t));
	if (tb->t == NULL || !scan_canvas(c, t, tb, none, too_many))
		goto fail;
	npal = choose_palette(t, pal);
	if (npal < 0)
	{
		*too_many = true;
		goto fail;
	}

	o.cap = 16384;				/* grown to the exact need in put_deflate */
	o.buf = malloc(o.cap);
	if (o.buf == NULL)
		goto fail;
	chart_png_put_header(&o, w, h, 3, text_keys, text_values, ntext);
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
		chart_png_be32(&o, (uint32_t) (3 * npal));
		chart_png_bytes(&o, plte, 4 + 3 * npal);
		chart_png_be32(&o, chart_png_crc(0xffffffffu, plte, 4 + 3 * npal) ^ 0xffffffffu);
	}
	idat_start = chart_png_begin_idat(&o);
	put_deflate(&o, tb, t, stride, rows);
	free(rows);
	free(none);
	release_scratch(tb->t, tb->cap);
	return chart_png_end_idat(&o, idat_start, len);

fail:
	release_scratch(tb->t, tb->cap);
	free(rows);
	free(none);
	free(o.buf);
	return NULL;
}

