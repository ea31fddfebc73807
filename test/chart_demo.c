/*
 * chart_demo.c
 *		Stand-alone driver for the pure drawing code (src/chart*.c): reads
 *		"timestamp,value[,is_anomaly]" CSV lines (UTC), shades a trailing
 *		3-sigma band over the previous 180 points like detection does, and
 *		writes a PNG; with -n N it renders N times and prints ms per chart.
 *
 *	cc -O2 -Isrc $(pkg-config --cflags gdlib fontconfig) test/chart_demo.c \
 *		src/chart.c src/chart_text.c src/chart_png.c src/chart_png_palette.c \
 *		src/chart_png_rgb.c src/chart_scale.c src/chart_line.c \
 *		$(pkg-config --libs gdlib fontconfig) -lm -o chart_demo
 *	./chart_demo data.csv out.png [-n N] [-w W] [-h H] [-t TITLE]
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chart_line.h"

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
	FILE	   *f;
	char		line[256];
	int			n = 0,
				cap = 4096,
				reps = 1,
				width = 1200,
				height = 600,
				i;
	double	   *t = malloc(sizeof(double) * cap);
	double	   *v = malloc(sizeof(double) * cap);
	double	   *lo = malloc(sizeof(double) * cap);
	double	   *hi = malloc(sizeof(double) * cap);
	bool	   *an = malloc(sizeof(bool) * cap);
	ChartSeries se = {0};
	ChartLineSpec spec = {0};
	unsigned char *png = NULL;
	size_t		len = 0;
	char		err[256];
	double		t0;
	const char *title = "user_registrations";

	if (argc < 3)
	{
		fprintf(stderr, "usage: %s data.csv out.png [-n N] [-w W] [-h H] [-t TITLE]\n", argv[0]);
		return 2;
	}
	for (i = 3; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "-n") == 0)
			reps = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "-w") == 0)
			width = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "-h") == 0)
			height = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "-t") == 0)
			title = argv[i + 1];
	}
	f = fopen(argv[1], "r");
	if (!f)
	{
		perror(argv[1]);
		return 1;
	}
	while (fgets(line, sizeof(line), f) && n < cap)
	{
		struct tm	tm = {0};
		char	   *p = strptime(line, "%Y-%m-%d%n%H:%M:%S", &tm);
		char	   *q;

		if (!p || *p != ',')
			continue;
		t[n] = (double) timegm(&tm);
		v[n] = strtod(p + 1, &q);
		an[n] = (*q == ',' && (q[1] == '1' || q[1] == 't'));
		n++;
	}
	fclose(f);
	for (i = 0; i < n; i++)
	{
		int			k,
					m = 0;
		double		s = 0,
					ss = 0;

		for (k = i - 180; k < i; k++)
			if (k >= 0)
			{
				s += v[k];
				ss += v[k] * v[k];
				m++;
			}
		if (m < 90)
			lo[i] = hi[i] = NAN;
		else
		{
			double		mean = s / m,
						sd = sqrt(fmax(ss / m - mean * mean, 0));

			lo[i] = mean - 3 * sd;
			hi[i] = mean + 3 * sd;
		}
	}
	se.label = title;
	se.n = n;
	se.t = t;
	se.v = v;
	se.band_lo = lo;
	se.band_hi = hi;
	se.anomaly = an;
	se.color = chart_palette[0];
	spec.width = width;
	spec.height = height;
	spec.title = title;
	spec.subtitle = "2026-11-20 00:00 to 2026-11-21 00:00 UTC, 1,440 points, 15 anomalies";
	spec.y_label = "value per minute";
	spec.t_min = n ? t[0] : 0;
	spec.t_max = n ? t[n - 1] + 60 : 0;
	spec.gap = 90;
	spec.nseries = 1;
	spec.series = &se;
	spec.band_label = "expected range";
	spec.anomaly_label = "anomaly";
	spec.empty_message = "No data in this range";

	png = chart_line_render(&spec, &len, err, sizeof(err));	/* warm-up */
	t0 = now_ms();
	for (i = 0; i < reps; i++)
	{
		free(png);
		png = chart_line_render(&spec, &len, err, sizeof(err));
		if (!png)
		{
			fprintf(stderr, "render failed: %s\n", err);
			return 1;
		}
	}
	printf("drawing_ms_per_chart=%.3f png_bytes=%zu points=%d\n",
		   (now_ms() - t0) / reps, len, n);
	f = fopen(argv[2], "wb");
	fwrite(png, 1, len, f);
	fclose(f);
	free(png);
	return 0;
}
