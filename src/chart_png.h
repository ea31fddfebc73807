/*
 * chart_png.h
 *		Private to the PNG encoders (chart_png*.c): the output buffer, the
 *		deflate bit sink, PNG framing and the row scan they share.
 *
 * chart_png.c frames the file (signature, IHDR, tEXt, CRC-32, IDAT length,
 * IEND) and chooses the encoder; an encoder writes its pixel data between
 * chart_png_begin_idat and chart_png_end_idat:
 *	chart_png_palette.c		indexed colour, dynamic Huffman codes (charts)
 *	chart_png_rgb.c			8-bit RGB, fixed Huffman codes (more than
 *							4,096 colours)
 * Pure C: see chart.h.
 */
#ifndef MA_CHART_PNG_H
#define MA_CHART_PNG_H

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

extern uint32_t chart_png_crc(uint32_t crc, const unsigned char *p, size_t n);
extern void chart_png_reserve(PngOut *o, size_t more);
extern void chart_png_bytes(PngOut *o, const void *p, size_t n);
extern void chart_png_be32(PngOut *o, uint32_t v);
extern void chart_png_put_header(PngOut *o, int w, int h, int color_type,
								 const char *const *text_keys,
								 const char *const *text_values, int ntext);
extern size_t chart_png_begin_idat(PngOut *o);
extern unsigned char *chart_png_end_idat(PngOut *o, size_t idat_start,
										 size_t *len);

extern unsigned char *chart_png_encode_palette(const ChartCanvas *c,
											   const char *const *text_keys,
											   const char *const *text_values,
											   int ntext, size_t *len,
											   bool *too_many);
extern unsigned char *chart_png_encode_rgb(const ChartCanvas *c,
										   const char *const *text_keys,
										   const char *const *text_values,
										   int ntext, size_t *len);

/*
 * Appends nbits (<= 56) bits of v, least significant first (deflate bit
 * order): up to a whole match (length code and extra bits, distance code
 * and extra bits: at most 48) at once.  The caller has reserved room (see
 * the per-row reservation): this stores eight bytes every time and keeps
 * the whole ones, which costs less than a branch that is taken at random.
 */
static inline void
put_bits(BitSink *bs, uint64_t v, int nbits)
{
	uint64_t	le;
	int			whole;

	bs->bits |= v << bs->nbits;
	bs->nbits += nbits;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	le = __builtin_bswap64(bs->bits);
#else
	le = bs->bits;
#endif
	memcpy(bs->p, &le, 8);
	whole = bs->nbits >> 3;		/* at most 7: fewer than 8 bits were left */
	bs->p += whole;
	bs->bits >>= 8 * whole;
	bs->nbits &= 7;
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

#endif							/* MA_CHART_PNG_H */
