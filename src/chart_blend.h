/*
 * chart_blend.h
 *		The pixel blend that the canvas's primitives (chart.c) and its text
 *		(chart_text.c) share: inline, as it runs once per covered pixel.
 */
#ifndef CHART_BLEND_H
#define CHART_BLEND_H

#include "chart.h"

#define RGB_R(c) (((c) >> 16) & 0xff)
#define RGB_G(c) (((c) >> 8) & 0xff)
#define RGB_B(c) ((c) & 0xff)

/* x / 255 rounded, for 0 <= x <= 255 * 255 */
#define DIV255(x) (((x) + 128 + (((x) + 128) >> 8)) >> 8)

/* Blends color over the pixel at px with alpha 0..255. */
static inline void
blend_pixel(int *px, ChartColor color, int a)
{
	int			p = *px;
	int			na = 255 - a;
	int			r,
				g,
				b;

	if (a >= 255)
	{
		*px = (int) (color & 0xffffff);
		return;
	}
	r = DIV255(((p >> 16) & 0xff) * na + (int) RGB_R(color) * a);
	g = DIV255(((p >> 8) & 0xff) * na + (int) RGB_G(color) * a);
	b = DIV255((p & 0xff) * na + (int) RGB_B(color) * a);
	*px = (r << 16) | (g << 8) | b;
}

#endif							/* CHART_BLEND_H */
