/*
 * fuzz_chart.c
 *		libFuzzer target for the line-chart drawing (src/chart_line.c,
 *		chart.c, chart_text.c, chart_scale.c, chart_png.c), the way
 *		chart_sql.c calls it but with any data: up to three series of any
 *		timestamps in PostgreSQL's timestamp range (4713 BC to 294276 AD,
 *		what chart_sql.c can pass) and any values (NaN, infinities, huge
 *		ranges), bands, anomaly flags, labels of any bytes, any x range
 *		and gap, a small canvas.
 *
 * Input: a header byte per option, then per point 17 bytes (timestamp,
 * value as doubles, a flag byte), then label text.  chart_line_render
 * must return a PNG or a message, never crash or read out of bounds.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chart_line.h"

#define MAX_POINTS 2000
/* PostgreSQL's timestamp range in Unix seconds */
#define T_LOW (-210866803200.0)
#define T_HIGH 9224318016000.0
#define Min(a, b) ((a) < (b) ? (a) : (b))

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Any double, folded into the timestamp range. */
static double
as_time(double d)
{
	if (!isfinite(d))
		return 0;
	return T_LOW + fmod(fabs(d), T_HIGH - T_LOW);
}

static double
take_double(const uint8_t **p, const uint8_t *end)
{
	double		d = 0;

	if (*p + sizeof(d) <= end)
	{
		memcpy(&d, *p, sizeof(d));
		*p += sizeof(d);
	}
	return d;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static double t[MAX_POINTS],
				v[MAX_POINTS],
				lo[MAX_POINTS],
				hi[MAX_POINTS];
	static bool an[MAX_POINTS];
	ChartSeries se[3];
	ChartLineSpec spec;
	const uint8_t *p = data,
			   *end = data + size;
	char		label[256];
	char		err[256];
	unsigned char *png;
	size_t		len = 0,
				ll;
	int			opts,
				nseries,
				n = 0,
				per;

	if (size < 4)
		return 0;
	opts = p[0];
	nseries = 1 + p[1] % 3;
	memset(&spec, 0, sizeof(spec));
	/* Small canvases keep an iteration fast; the size limits are tested too. */
	spec.width = (p[2] & 0x80) ? 99 + p[2] % 8 : CHART_MIN_SIZE + p[2] % 200;
	spec.height = CHART_MIN_SIZE + p[3] % 150;
	p += 4;
	if (opts & 1)
	{
		spec.t_min = as_time(take_double(&p, end));
		spec.t_max = as_time(take_double(&p, end));
	}
	if (opts & 2)
		spec.gap = take_double(&p, end);

	while (n < MAX_POINTS && p + 17 <= end)
	{
		/* ascending, as the contract says, from a random start */
		memcpy(&t[n], p, 8);
		t[n] = as_time(t[n]);
		if (n > 0)
			t[n] = fmin(t[n - 1] + fmod(t[n] - T_LOW, 1e9), T_HIGH);
		memcpy(&v[n], p + 8, 8);
		an[n] = p[16] & 1;
		lo[n] = (p[16] & 2) ? NAN : v[n] - (p[16] >> 2);
		hi[n] = (p[16] & 2) ? NAN : v[n] + (p[16] >> 3);
		p += 17;
		n++;
	}
	ll = Min((size_t) (end - p), sizeof(label) - 1);
	memcpy(label, p, ll);
	label[ll] = '\0';

	per = n / nseries;
	memset(se, 0, sizeof(se));
	for (int s = 0; s < nseries; s++)
	{
		se[s].label = (opts & 4) ? label : NULL;
		se[s].n = (s == nseries - 1) ? n - per * s : per;
		se[s].t = t + per * s;
		se[s].v = v + per * s;
		se[s].band_lo = (opts & 8) ? lo + per * s : NULL;
		se[s].band_hi = (opts & 8) ? hi + per * s : NULL;
		se[s].anomaly = (opts & 16) ? an + per * s : NULL;
		se[s].right_axis = s == 1 && (opts & 32);
		se[s].dashed = s == 2;
		se[s].markers = (opts & 64) != 0;
		se[s].color = chart_palette[s % chart_palette_size];
	}
	spec.title = (opts & 128) ? label : "title";
	spec.subtitle = label;
	spec.y_label = "value";
	spec.y2_label = (opts & 32) ? label : NULL;
	spec.nseries = nseries;
	spec.series = se;
	spec.band_label = "expected range";
	spec.anomaly_label = "anomaly";
	spec.empty_message = "No data in this range";

	png = chart_line_render(&spec, &len, err, sizeof(err));
	if (png == NULL && err[0] == '\0')
		abort();				/* a failure always says why */
	free(png);
	return 0;
}
