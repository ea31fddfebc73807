/*
 * heatmap_sql.c
 *		The SQL face of heatmaps: the heatmap aggregate, which draws any query
 *		of (row, column, value[, outlined]) rows, one per cell, or of (row,
 *		column, sample, quantile) rows, one per raw sample.  render_heatmap()
 *		(SQL, in the install script) feeds the first form a metric's merged
 *		series state.
 *
 * The aggregate collects at most CHART_HEATMAP_MAX_ROWS distinct row labels
 * and CHART_HEATMAP_MAX_COLUMNS column labels of at most
 * CHART_HEATMAP_MAX_LABEL characters; more is an error as soon as the row
 * that exceeds the limit arrives, so the cost a caller controls is bounded
 * (2,500 cells, HEATMAP_MAX_SAMPLES samples).  Labels are sorted in byte
 * order, the order seaborn's pivot gives.  NULL labels become "unknown" (as
 * record_event writes a missing dimension); a NULL or non-finite value
 * leaves the cell empty.
 *
 * The sample form keeps each cell's samples and takes their quantile in the
 * final function by selection, exactly as percentile_cont does, so that a
 * heatmap of raw samples is one pass over the rows: with 20,000 samples in
 * 30 cells it takes a fifth of the time of percentile_cont per cell feeding
 * the cell form (test/bench/heatmap.sh), which sorts each cell.  The
 * drawing is chart_heatmap.c (pure C); its malloc'd PNG is freed in
 * PG_FINALLY.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "chart_heatmap.h"
#include "chart_options.h"
#include "order_stat.h"

PG_FUNCTION_INFO_V1(metric_anomaly_heatmap_accum);
PG_FUNCTION_INFO_V1(metric_anomaly_heatmap_sample_accum);
PG_FUNCTION_INFO_V1(metric_anomaly_heatmap_final);

/*
 * At most this many samples in one heatmap drawn from raw samples: 80 MB
 * of values (twice that while an array doubles), the bound on the memory a
 * query can make the sample form take.
 */
#define HEATMAP_MAX_SAMPLES		10000000

/* The samples of one cell (sample form). */
typedef struct HeatmapCellSamples
{
	double	   *v;
	int			n;
	int			cap;
} HeatmapCellSamples;

typedef struct HeatmapState
{
	int			nrows;
	int			ncols;
	char	   *rows[CHART_HEATMAP_MAX_ROWS];
	char	   *cols[CHART_HEATMAP_MAX_COLUMNS];
	int			row_len[CHART_HEATMAP_MAX_ROWS];	/* bytes */
	int			col_len[CHART_HEATMAP_MAX_COLUMNS];
	double		cell[CHART_HEATMAP_MAX_ROWS][CHART_HEATMAP_MAX_COLUMNS];
	bool		set[CHART_HEATMAP_MAX_ROWS][CHART_HEATMAP_MAX_COLUMNS];
	bool		outlined[CHART_HEATMAP_MAX_ROWS][CHART_HEATMAP_MAX_COLUMNS];
	Jsonb	   *options;		/* of the first row that had any */
	MemoryContext cxt;			/* the aggregate context */
	/* the sample form: the quantile of the first row, each cell's samples */
	double		quantile;
	int64		nsamples;
	HeatmapCellSamples (*samples)[CHART_HEATMAP_MAX_COLUMNS];
} HeatmapState;

/*
 * Index of the label of argument arg ("unknown" for NULL) in names[0..*n),
 * added when new: its length and the count checked then.  A row of a known
 * label costs a comparison of lengths and last bytes (which tell most
 * labels apart: endpoints, versions) before a memcmp(), and no copy.  With
 * 20,000 samples over 30 cells this is 15% of the CPU time of the heatmap
 * (perf), most of it the first read of the row's bytes; hashing the labels
 * first did not help.
 */
static int
label_index(FunctionCallInfo fcinfo, int arg, char **names, int *lens, int *n,
			int max, const char *what, MemoryContext aggcxt)
{
	const char *p;
	int			len,
				k,
				chars;

	if (PG_ARGISNULL(arg))
	{
		p = "unknown";
		len = strlen(p);
	}
	else
	{
		text	   *t = PG_GETARG_TEXT_PP(arg);

		p = VARDATA_ANY(t);
		len = VARSIZE_ANY_EXHDR(t);
	}
	for (k = 0; k < *n; k++)
		if (lens[k] == len && (len == 0 || names[k][len - 1] == p[len - 1]) &&
			memcmp(names[k], p, len) == 0)
			return k;

	chars = pg_mbstrlen_with_len(p, len);
	if (chars > CHART_HEATMAP_MAX_LABEL)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("heatmap %s label is too long", what),
				 errdetail("The label has %d characters; a heatmap label has at most %d.",
						   chars, CHART_HEATMAP_MAX_LABEL),
				 errhint("Shorten the dimension values, e.g. with left(value, %d).",
						 CHART_HEATMAP_MAX_LABEL)));
	if (*n >= max)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many %ss for one heatmap", what),
				 errdetail("A heatmap draws at most %d %ss.", max, what),
				 errhint("Filter the rows, or choose a dimension with fewer values.")));
	names[*n] = MemoryContextAlloc(aggcxt, len + 1);
	memcpy(names[*n], p, len);
	names[*n][len] = '\0';
	lens[*n] = len;
	return (*n)++;
}

/*
 * The state of this call, created on its first row (the aggregate context
 * checked then: an internal state cannot come from anywhere else later),
 * and the options of the first row that has any (argument options_arg).
 */
static HeatmapState *
heatmap_state(FunctionCallInfo fcinfo, int options_arg, MemoryContext *aggcxt)
{
	HeatmapState *st;

	if (PG_ARGISNULL(0))
	{
		if (!AggCheckCallContext(fcinfo, aggcxt))
			elog(ERROR, "heatmap transition function called in a non-aggregate context");
		st = MemoryContextAllocZero(*aggcxt, sizeof(HeatmapState));
		st->cxt = *aggcxt;
	}
	else
	{
		st = (HeatmapState *) PG_GETARG_POINTER(0);
		*aggcxt = st->cxt;
	}

	if (st->options == NULL && !PG_ARGISNULL(options_arg))
	{
		MemoryContext old = MemoryContextSwitchTo(*aggcxt);

		st->options = DatumGetJsonbPCopy(PG_GETARG_DATUM(options_arg));
		MemoryContextSwitchTo(old);
	}
	return st;
}

/*
 * Transition function of both forms of one row per cell:
 *	(state, row text, column text, value float8, options jsonb)
 *	(state, row text, column text, value float8, outlined boolean, options jsonb)
 * A cell given twice is an error: the caller aggregates first.
 */
Datum
metric_anomaly_heatmap_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	HeatmapState *st = heatmap_state(fcinfo, PG_NARGS() == 6 ? 5 : 4, &aggcxt);
	int			r,
				c;

	r = label_index(fcinfo, 1, st->rows, st->row_len, &st->nrows,
					CHART_HEATMAP_MAX_ROWS, "row", aggcxt);
	c = label_index(fcinfo, 2, st->cols, st->col_len, &st->ncols,
					CHART_HEATMAP_MAX_COLUMNS, "column", aggcxt);
	if (st->set[r][c])
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("heatmap cell (\"%s\", \"%s\") is given twice", st->rows[r], st->cols[c]),
				 errhint("Aggregate the values of each cell first, e.g. GROUP BY row, column, "
						 "or pass the raw samples and a quantile.")));
	st->set[r][c] = true;
	st->cell[r][c] = PG_ARGISNULL(3) ? NAN : PG_GETARG_FLOAT8(3);
	if (!isfinite(st->cell[r][c]))
		st->cell[r][c] = NAN;
	st->outlined[r][c] = PG_NARGS() == 6 && !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	PG_RETURN_POINTER(st);
}

/*
 * Transition function of the sample form, one row per sample:
 *	(state, row text, column text, sample float8, quantile float8, options jsonb)
 * The sample is kept in its cell; the final function takes the quantile of
 * each cell exactly.  NULL, NaN and infinite samples are skipped (a cell
 * with none is empty).  The quantile is that of the first row; another one
 * later is an error, as is one outside [0, 1].
 */
Datum
metric_anomaly_heatmap_sample_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	HeatmapState *st = heatmap_state(fcinfo, 5, &aggcxt);
	double		q = PG_ARGISNULL(4) ? NAN : PG_GETARG_FLOAT8(4);
	double		v;
	HeatmapCellSamples *cs;
	int			r,
				c;

	if (st->samples == NULL)
	{
		if (!(q >= 0 && q <= 1))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("heatmap quantile must be between 0 and 1"),
					 errdetail("The quantile given was %s.", PG_ARGISNULL(4) ? "NULL" :
							   psprintf("%g", q)),
					 errhint("Pass for example 0.95 for the 95th percentile.")));
		st->quantile = q;
		st->samples = MemoryContextAllocZero(aggcxt, sizeof(HeatmapCellSamples) *
											 CHART_HEATMAP_MAX_ROWS * CHART_HEATMAP_MAX_COLUMNS);
	}
	else if (q != st->quantile)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("heatmap quantile changes between rows"),
				 errdetail("The first row asked for %g, a later one for %g.", st->quantile, q),
				 errhint("Pass the same quantile, a constant, in every row.")));

	r = label_index(fcinfo, 1, st->rows, st->row_len, &st->nrows,
					CHART_HEATMAP_MAX_ROWS, "row", aggcxt);
	c = label_index(fcinfo, 2, st->cols, st->col_len, &st->ncols,
					CHART_HEATMAP_MAX_COLUMNS, "column", aggcxt);
	if (PG_ARGISNULL(3) || !isfinite(v = PG_GETARG_FLOAT8(3)))
		PG_RETURN_POINTER(st);

	if (st->nsamples >= HEATMAP_MAX_SAMPLES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many samples for one heatmap"),
				 errdetail("A heatmap takes the quantiles of at most %d samples.",
						   HEATMAP_MAX_SAMPLES),
				 errhint("Filter the rows, or define a quantile metric and draw it with render_heatmap(), "
						 "which merges the stored sketches.")));
	cs = &st->samples[r][c];
	if (cs->n == cs->cap)
	{
		cs->cap = cs->cap ? cs->cap * 2 : 256;
		cs->v = cs->v ? repalloc(cs->v, sizeof(double) * cs->cap) :
			MemoryContextAlloc(aggcxt, sizeof(double) * cs->cap);
	}
	cs->v[cs->n++] = v;
	st->nsamples++;
	PG_RETURN_POINTER(st);
}

typedef struct HeatmapOptions
{
	char	   *title;
	char	   *x_label;
	char	   *y_label;
	char	   *value_label;
	int			width;
	int			height;
} HeatmapOptions;

/* Parses and checks heatmap's options; unknown keys are an error. */
static void
parse_options(Jsonb *jb, HeatmapOptions *o)
{
	MaChartOptions opts;
	JsonbValue	v;

	memset(o, 0, sizeof(*o));
	o->width = 1200;
	o->height = 600;
	if (!ma_chart_options_begin(&opts, jb, "heatmap",
								"{\"title\": \"p95 latency\", \"width\": 800}"))
		return;
	while (ma_chart_options_next(&opts, &v))
	{
		if (strcmp(opts.key, "title") == 0)
			o->title = ma_chart_option_string(&opts, &v);
		else if (strcmp(opts.key, "x_label") == 0)
			o->x_label = ma_chart_option_string(&opts, &v);
		else if (strcmp(opts.key, "y_label") == 0)
			o->y_label = ma_chart_option_string(&opts, &v);
		else if (strcmp(opts.key, "value_label") == 0)
			o->value_label = ma_chart_option_string(&opts, &v);
		else if (!ma_chart_option_size(&opts, &v, &o->width, &o->height))
			ma_chart_option_unknown(&opts, "title, x_label, y_label, value_label, width and height");
	}
}

static int
label_cmp(const void *a, const void *b)
{
	return strcmp(**(char *const *const *) a, **(char *const *const *) b);
}

/* Sorted order of names: perm[k] is the index of the k-th smallest. */
static void
sort_labels(char **names, int n, int *perm)
{
	char	  **refs[Max(CHART_HEATMAP_MAX_ROWS, CHART_HEATMAP_MAX_COLUMNS)];
	int			k;

	for (k = 0; k < n; k++)
		refs[k] = &names[k];
	qsort(refs, n, sizeof(char **), label_cmp);
	for (k = 0; k < n; k++)
		perm[k] = (int) (refs[k] - names);
}

/* Final function: draws the cells; no rows gives NULL. */
Datum
metric_anomaly_heatmap_final(PG_FUNCTION_ARGS)
{
	HeatmapState *st;
	HeatmapOptions o;
	ChartHeatmapSpec spec;
	int			rperm[CHART_HEATMAP_MAX_ROWS],
				cperm[CHART_HEATMAP_MAX_COLUMNS];
	const char *rows[CHART_HEATMAP_MAX_ROWS],
			   *cols[CHART_HEATMAP_MAX_COLUMNS];
	double	   *cells;
	bool	   *outlined;
	int			i,
				j;
	unsigned char *png;
	size_t		len = 0;
	char		err[256];
	bytea	   *volatile result = NULL;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (HeatmapState *) PG_GETARG_POINTER(0);
	parse_options(st->options, &o);

	sort_labels(st->rows, st->nrows, rperm);
	sort_labels(st->cols, st->ncols, cperm);
	cells = palloc(sizeof(double) * st->nrows * st->ncols);
	outlined = palloc(sizeof(bool) * st->nrows * st->ncols);
	for (i = 0; i < st->nrows; i++)
	{
		rows[i] = st->rows[rperm[i]];
		for (j = 0; j < st->ncols; j++)
		{
			int			r = rperm[i],
						c = cperm[j];

			if (st->samples)
				cells[i * st->ncols + j] = st->samples[r][c].n == 0 ? NAN :
					ma_quantile_cont(st->samples[r][c].v, st->samples[r][c].n, st->quantile);
			else
				cells[i * st->ncols + j] = st->set[r][c] ? st->cell[r][c] : NAN;
			outlined[i * st->ncols + j] = st->set[r][c] && st->outlined[r][c];
		}
	}
	for (j = 0; j < st->ncols; j++)
		cols[j] = st->cols[cperm[j]];

	memset(&spec, 0, sizeof(spec));
	spec.width = o.width;
	spec.height = o.height;
	spec.title = o.title;
	spec.x_label = o.x_label;
	spec.y_label = o.y_label;
	spec.value_label = o.value_label;
	spec.nrows = st->nrows;
	spec.ncols = st->ncols;
	spec.row_labels = rows;
	spec.col_labels = cols;
	spec.cells = cells;
	spec.outlined = outlined;

	CHECK_FOR_INTERRUPTS();
	err[0] = '\0';
	png = chart_heatmap_render(&spec, &len, err, sizeof(err));
	if (png == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("could not render heatmap: %s", err),
				 errhint("Draw a larger image, or fewer rows and columns.")));
	PG_TRY();
	{
		result = (bytea *) palloc(VARHDRSZ + len);
		SET_VARSIZE(result, VARHDRSZ + len);
		memcpy(VARDATA(result), png, len);
	}
	PG_FINALLY();
	{
		free(png);
	}
	PG_END_TRY();
	PG_RETURN_BYTEA_P(result);
}
