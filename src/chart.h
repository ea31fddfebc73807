/*
 * chart.h
 *		Drawing for metric_anomaly's PNG charts: a canvas, antialiased
 *		primitives, cached TrueType text and a PNG encoder.
 *
 * Everything declared here is plain C over libgd: no PostgreSQL backend
 * headers, no palloc, no ereport.  Functions report failure through their
 * return value, so the same code runs inside the server (chart_sql.c) and in
 * stand-alone test programs.  Memory is malloc'd and freed before each
 * function returns, except the canvas (chart_canvas_release) and the encoded
 * PNG (free()).  The glyph cache, the last canvas (kept for the next chart
 * of its size, at most 2400 x 1200 pixels: 12 MB, see chart.c) and the PNG
 * encoder's token buffer (at most 4 MB, see chart_png_palette.c) are
 * process-lifetime and bounded.
 */
#ifndef MA_CHART_H
#define MA_CHART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gd.h>

/* Documented size limits, in pixels. */
#define CHART_MIN_SIZE		100
#define CHART_MAX_SIZE		4000

/* 0xRRGGBB */
typedef uint32_t ChartColor;

typedef enum ChartFont
{
	CHART_FONT_REGULAR = 0,
	CHART_FONT_BOLD = 1
} ChartFont;

typedef enum ChartAlign
{
	CHART_ALIGN_LEFT,
	CHART_ALIGN_CENTER,
	CHART_ALIGN_RIGHT
} ChartAlign;

typedef struct ChartCanvas
{
	gdImagePtr	im;				/* truecolor, opaque */
	int			width;
	int			height;
	bool		ttf;			/* TrueType text works */
	unsigned char *mask;		/* stroke coverage, width * height */
	int			mask_x0,		/* dirty part of the mask */
				mask_y0,
				mask_x1,
				mask_y1;
} ChartCanvas;

/*
 * chart_canvas_init's background when the caller fills every pixel itself:
 * a kept canvas then keeps the last chart's pixels until overwritten.
 */
#define CHART_NO_BACKGROUND	0xffffffffu

/* A dash pattern in pixels; on == 0 means solid.  phase is carried along. */
typedef struct ChartDash
{
	double		on;
	double		off;
	double		phase;
} ChartDash;

extern bool chart_canvas_init(ChartCanvas *c, int width, int height,
							  ChartColor background);
extern void chart_canvas_release(ChartCanvas *c);

extern void chart_fill_rect(ChartCanvas *c, int x0, int y0, int x1, int y1,
							ChartColor color, int alpha);
extern void chart_hline(ChartCanvas *c, int x0, int x1, int y,
						ChartColor color, int dash_on, int dash_off);
extern void chart_vline(ChartCanvas *c, int x, int y0, int y1,
						ChartColor color, int dash_on, int dash_off);
extern void chart_fill_between(ChartCanvas *c, const double *x,
							   const double *ylo, const double *yhi, int n,
							   int clip_y0, int clip_y1,
							   ChartColor color, int alpha);

/* Antialiased strokes: accumulate segments, then composite once. */
extern void chart_stroke_segment(ChartCanvas *c, double x0, double y0,
								 double x1, double y1, double width,
								 ChartDash *dash);
extern void chart_stroke_finish(ChartCanvas *c, ChartColor color);
extern void chart_disc(ChartCanvas *c, double cx, double cy, double r,
					   ChartColor color);

/*
 * Text (chart_text.c); sizes are in points at 96 dpi, y is the top of the
 * line box.  chart_text_available() tells whether TrueType text works in
 * this process (tried once; otherwise libgd's bitmap fonts draw).
 */
extern bool chart_text_available(void);
extern int	chart_text_width(ChartCanvas *c, ChartFont font, double size,
							 const char *s);
extern int	chart_text_height(ChartCanvas *c, ChartFont font, double size);
extern void chart_text(ChartCanvas *c, int x, int y, ChartFont font,
					   double size, ChartColor color, ChartAlign align,
					   const char *s);
extern const char *chart_fit_text(ChartCanvas *c, ChartFont font, double size,
								  const char *s, int maxw, char *buf,
								  size_t buflen);
extern void chart_text_up(ChartCanvas *c, int x, int y_center, ChartFont font,
						  double size, ChartColor color, const char *s);

/*
 * PNG encoding (chart_png.c), with ntext tEXt chunks (Latin-1 key/value
 * pairs); returns malloc'd bytes or NULL.
 */
extern unsigned char *chart_png_encode(const ChartCanvas *c,
									   const char *const *text_keys,
									   const char *const *text_values,
									   int ntext, size_t *len);

#endif							/* MA_CHART_H */
