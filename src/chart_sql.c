/*
 * chart_sql.c
 *		The SQL face of the charts: render_metric_chart(), which draws a
 *		metric's minutes with their expected band and anomalies, and the
 *		line_chart aggregate, which draws any query.
 *
 * This file reads data (SPI, aggregate state) and validates arguments; the
 * drawing itself is chart_line.c, which is pure C and returns malloc'd PNG
 * bytes.  Those are copied into a palloc'd bytea and freed in PG_FINALLY,
 * so nothing libgd or malloc allocated outlives an error.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "chart_line.h"
#include "chart_options.h"
#include "chart_sql.h"
#include "spi_util.h"

/* At most this many points in one chart. */
#define CHART_MAX_POINTS	100000
/* At most this many series in one line_chart. */
#define CHART_MAX_SERIES	16

PG_FUNCTION_INFO_V1(metric_anomaly_render_metric_chart);
PG_FUNCTION_INFO_V1(metric_anomaly_line_chart_accum);
PG_FUNCTION_INFO_V1(metric_anomaly_line_chart_final);

static MaStatement series_exists_stmt = {
	"SELECT 1 FROM metric_anomaly.series WHERE metric_name = $1",
	1, {TEXTOID}, NULL
};

static MaStatement chart_rows_stmt = {
	"SELECT metric_timestamp, metric_value, is_anomaly, anomaly_context"
	" FROM metric_anomaly.aggregated_metrics"
	" WHERE metric_name = $1 AND metric_timestamp >= $2 AND metric_timestamp <= $3"
	" ORDER BY metric_timestamp LIMIT $4",
	4, {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}, NULL
};

/* Unix seconds of a finite timestamptz. */
static double
timestamp_to_unix(TimestampTz ts)
{
	return (double) ts / USECS_PER_SEC +
		(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

/* The session TimeZone's offset from UTC at Unix time t (ChartUtcOffsetFn). */
static int
session_utc_offset(double t, void *arg)
{
	pg_time_t	tt = (pg_time_t) floor(t);
	struct pg_tm *tm = pg_localtime(&tt, session_timezone);

	return tm ? (int) tm->tm_gmtoff : 0;
}

/* The session TimeZone's abbreviation at Unix time t, e.g. "UTC" or "CST". */
static const char *
session_zone_abbrev(double t)
{
	pg_time_t	tt = (pg_time_t) floor(t);
	struct pg_tm *tm = pg_localtime(&tt, session_timezone);

	return (tm && tm->tm_zone) ? tm->tm_zone : "";
}

static void
check_size(const char *what, int v)
{
	if (v < CHART_MIN_SIZE || v > CHART_MAX_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chart %s must be between %d and %d pixels", what,
						CHART_MIN_SIZE, CHART_MAX_SIZE),
				 errdetail("The %s given was %d.", what, v)));
}

static void
too_many_points(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("too many points for one chart"),
			 errdetail("A chart draws at most %d points.", CHART_MAX_POINTS),
			 errhint("Chart a shorter range, or aggregate the points first.")));
}

/*
 * Draws spec and returns the PNG as a palloc'd bytea; the malloc'd PNG is
 * freed on every path.
 */
static bytea *
render_to_bytea(const ChartLineSpec *spec)
{
	unsigned char *png;
	size_t		len = 0;
	char		err[256];
	bytea	   *volatile result = NULL;

	CHECK_FOR_INTERRUPTS();
	err[0] = '\0';
	png = chart_line_render(spec, &len, err, sizeof(err));
	if (png == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not render chart: %s", err)));
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
	return result;
}

/*
 * The value of a numeric, as double, read straight from numeric's storage
 * format: jsonb keeps numbers as numeric, and numeric_float8 goes through
 * numeric_out and strtod, which made reading the band of a day of minutes
 * cost more than half of the query.  The format is fixed (pg_upgrade keeps
 * data files), as numeric.c describes it: a uint16 header, then for the
 * short form (0x8000) sign 0x2000 and a 7-bit signed weight, for the long
 * form (0x0000 positive, 0x4000 negative) an int16 weight; then base-10000
 * int16 digits.  Special values (NaN, infinities: 0xC000) and anything
 * unexpected take numeric_float8.
 */
static double
numeric_to_double(Numeric num)
{
	static const double pow10000[] = {1e0, 1e4, 1e8, 1e12, 1e16, 1e20, 1e24,
	1e28, 1e32};
	const char *p = VARDATA_ANY(num);
	int			len = VARSIZE_ANY_EXHDR(num);
	uint16		header;
	int			weight,
				ndigits,
				i,
				exp;
	bool		negative;
	double		acc = 0.0;

	if (len < 2)
		goto slow;
	memcpy(&header, p, 2);
	if ((header & 0xC000) == 0x8000)
	{
		negative = (header & 0x2000) != 0;
		weight = (header & 0x0040) ? (int) (~0x003F | (header & 0x003F)) : (header & 0x003F);
		p += 2;
		len -= 2;
	}
	else if ((header & 0xC000) != 0xC000 && len >= 4)
	{
		int16		w;

		negative = (header & 0xC000) == 0x4000;
		memcpy(&w, p + 2, 2);
		weight = w;
		p += 4;
		len -= 4;
	}
	else
		goto slow;
	ndigits = len / 2;
	if (ndigits == 0)
		return 0.0;
	for (i = 0; i < ndigits; i++)
	{
		int16		dg;

		memcpy(&dg, p + 2 * i, 2);
		acc = acc * 10000.0 + dg;
	}
	exp = weight - ndigits + 1;
	if (exp >= 0 && exp <= 8)
		acc *= pow10000[exp];
	else if (exp < 0 && exp >= -8)
		acc /= pow10000[-exp];
	else
		acc *= pow(10000.0, exp);
	return negative ? -acc : acc;

slow:
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(num)));
}

/*
 * The numbers under "lower_boundary" and "upper_boundary" of a jsonb object
 * (an anomaly_context), NaN where a key is missing or not a number.  One
 * walk over the object's entries finds both: two getKeyJsonValueFromContainer
 * calls (binary searches, a memcmp per probe among the same-length keys)
 * were a third of reading the rows (perf, render_metric_chart of a day).
 * The entries are read as jsonb.h lays them out on disk (so pg_upgrade
 * keeps them): an object of n pairs has n key entries, then n value
 * entries, each an offset or length (JBE_ADVANCE_OFFSET) into the data
 * after them; a numeric value starts at an int-aligned offset.
 */
static void
jsonb_band(Jsonb *jb, double *lo, double *hi)
{
	static const char lo_key[] = "lower_boundary",
				hi_key[] = "upper_boundary";
	const JsonbContainer *jc = &jb->root;
	const char *base;
	uint32		off = 0;
	int			n,
				i,
				lo_at = -1,
				hi_at = -1;

	StaticAssertStmt(sizeof(lo_key) == sizeof(hi_key), "keys of one length");
	*lo = *hi = NAN;
	if (!JsonContainerIsObject(jc))
		return;
	n = JsonContainerSize(jc);
	base = (const char *) &jc->children[2 * n];
	for (i = 0; i < n; i++)
	{
		uint32		start = off;

		JBE_ADVANCE_OFFSET(off, jc->children[i]);
		if (off - start != sizeof(lo_key) - 1)
			continue;
		if (memcmp(base + start, lo_key, sizeof(lo_key) - 1) == 0)
			lo_at = i;
		else if (memcmp(base + start, hi_key, sizeof(hi_key) - 1) == 0)
			hi_at = i;
	}
	for (i = 0; i < n && (lo_at >= 0 || hi_at >= 0); i++)
	{
		JEntry		je = jc->children[n + i];
		uint32		start = off;

		JBE_ADVANCE_OFFSET(off, je);
		if ((i != lo_at && i != hi_at) || !JBE_ISNUMERIC(je))
			continue;
		if (i == lo_at)
			*lo = numeric_to_double((Numeric) (base + INTALIGN(start)));
		else
			*hi = numeric_to_double((Numeric) (base + INTALIGN(start)));
	}
}

/* Formats n with thousands separators ("1,440"). */
static const char *
group_digits(int n, char *buf, size_t len)
{
	char		digits[16];
	int			nd = snprintf(digits, sizeof(digits), "%d", n);
	int			i,
				o = 0;

	for (i = 0; i < nd && o < (int) len - 2; i++)
	{
		if (i > 0 && digits[i - 1] != '-' && (nd - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}

/* Formats local time t for a subtitle. */
static void
format_local(double t, const char *fmt, char *buf, size_t len)
{
	chart_format_time(t, fmt, session_utc_offset, NULL, buf, len);
}

/*
 * render_metric_chart(metric_name text, since timestamptz, until timestamptz,
 *					   width int, height int) RETURNS bytea
 *
 * Draws the metric's minutes in [since, until]: the values as a line that
 * breaks where a minute is missing, the expected band (lower_boundary to
 * upper_boundary of each minute's evidence) shaded, anomalies as red dots.
 */
/* The points of one metric's chart, as read from aggregated_metrics. */
typedef struct ChartRows
{
	int			cap;			/* length of the arrays */
	int			n;				/* points kept */
	int			anomalies;
	uint64		rows;			/* rows read */
	double	   *t;
	double	   *v;
	double	   *lo;
	double	   *hi;
	bool	   *anomaly;
} ChartRows;

/*
 * Keeps one row (minute, value, is_anomaly, anomaly_context) as a point;
 * rows without a finite value are skipped.
 */
static void
chart_rows_add(ChartRows *r, Datum *d, const bool *isnull)
{
	int			i = r->n;
	double		val;

	/* the query returns one row too many to tell; the caller complains */
	if (++r->rows > CHART_MAX_POINTS || isnull[0])
		return;
	if (i == r->cap)
	{
		/* rows need not sit on whole minutes: grow */
		r->cap *= 2;
		r->t = repalloc(r->t, sizeof(double) * r->cap);
		r->v = repalloc(r->v, sizeof(double) * r->cap);
		r->lo = repalloc(r->lo, sizeof(double) * r->cap);
		r->hi = repalloc(r->hi, sizeof(double) * r->cap);
		r->anomaly = repalloc(r->anomaly, sizeof(bool) * r->cap);
	}
	val = isnull[1] ? NAN : DatumGetFloat8(d[1]);
	if (!isfinite(val))
		return;					/* NaN and infinities are skipped */
	r->t[i] = timestamp_to_unix(DatumGetTimestampTz(d[0]));
	r->v[i] = val;
	r->anomaly[i] = !isnull[2] && DatumGetBool(d[2]);
	if (isnull[3])
		r->lo[i] = r->hi[i] = NAN;
	else
	{
		Jsonb	   *ctx = DatumGetJsonbP(d[3]);

		jsonb_band(ctx, &r->lo[i], &r->hi[i]);
		if ((Pointer) ctx != DatumGetPointer(d[3]))
			pfree(ctx);
	}
	if (r->anomaly[i])
		r->anomalies++;
	r->n++;
}

/* Reads chart rows as the executor produces them, without a tuple table. */
typedef struct ChartReceiver
{
	DestReceiver pub;
	ChartRows  *rows;
} ChartReceiver;

static bool
chart_receive(TupleTableSlot *slot, DestReceiver *self)
{
	slot_getallattrs(slot);
	chart_rows_add(((ChartReceiver *) self)->rows, slot->tts_values, slot->tts_isnull);
	return true;
}

/* Runs the rows query of render_metric_chart into r (SPI connected). */
static void
chart_rows_read(ChartRows *r, Datum *args)
{
	ChartReceiver receiver;

	ma_receiver_init(&receiver.pub, chart_receive);
	receiver.rows = r;
	/* SPI calls a SELECT whose rows go to a DestNone receiver a utility */
	ma_execute_into(&chart_rows_stmt, args, &receiver.pub, SPI_OK_UTILITY);
}

Datum
metric_anomaly_render_metric_chart(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	TimestampTz since = PG_GETARG_TIMESTAMPTZ(1);
	TimestampTz until = PG_GETARG_TIMESTAMPTZ(2);
	int32		width = PG_GETARG_INT32(3);
	int32		height = PG_GETARG_INT32(4);
	char	   *name_str = text_to_cstring(name);
	MemoryContext chart_cxt,
				old_cxt;
	Datum		args[4];
	ChartRows	rows;
	double	   *t,
			   *v,
			   *lo,
			   *hi;
	bool	   *anomaly;
	int			nanomaly = 0,
				npoints = 0;
	ChartSeries se;
	ChartLineSpec spec;
	char		from[32],
				to[32],
				n1[32],
				n2[32],
				subtitle[256];
	bytea	   *result;

	check_size("width", width);
	check_size("height", height);
	if (TIMESTAMP_NOT_FINITE(since) || TIMESTAMP_NOT_FINITE(until))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chart range must be finite"),
				 errdetail("Neither since nor until may be infinity or -infinity.")));
	if (since > until)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("chart range starts after it ends"),
				 errdetail("since (%s) is later than until (%s).",
						   pstrdup(timestamptz_to_str(since)),
						   pstrdup(timestamptz_to_str(until))),
				 errhint("Swap the two arguments.")));

	/* a temporary context per chart; SPI's own is gone after SPI_finish */
	chart_cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly chart",
									  ALLOCSET_DEFAULT_SIZES);

	/*
	 * The worker writes one row per minute: size the arrays for the minutes
	 * of the range (they grow if rows were written otherwise).
	 */
	{
		double		minutes = ((double) until - (double) since) / USECS_PER_MINUTE + 2;
		int			cap = (int) Min(minutes, (double) CHART_MAX_POINTS + 1);

		old_cxt = MemoryContextSwitchTo(chart_cxt);
		memset(&rows, 0, sizeof(rows));
		rows.cap = cap;
		rows.t = palloc(sizeof(double) * cap);
		rows.v = palloc(sizeof(double) * cap);
		rows.lo = palloc(sizeof(double) * cap);
		rows.hi = palloc(sizeof(double) * cap);
		rows.anomaly = palloc(sizeof(bool) * cap);
		MemoryContextSwitchTo(old_cxt);
	}

	ma_spi_connect();
	args[0] = PointerGetDatum(name);
	args[1] = TimestampTzGetDatum(since);
	args[2] = TimestampTzGetDatum(until);
	args[3] = Int64GetDatum(CHART_MAX_POINTS + 1);
	chart_rows_read(&rows, args);
	if (rows.rows > CHART_MAX_POINTS)
		too_many_points();
	/* no row: an empty range of a known metric, or an unknown metric */
	if (rows.rows == 0 &&
		ma_execute(&series_exists_stmt, args, NULL, SPI_OK_SELECT, 1) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("metric \"%s\" does not exist", name_str),
				 errhint("List the known metrics with: SELECT metric_name FROM metric_anomaly.series;")));
	ma_spi_finish();
	t = rows.t;
	v = rows.v;
	lo = rows.lo;
	hi = rows.hi;
	anomaly = rows.anomaly;
	npoints = rows.n;
	nanomaly = rows.anomalies;

	memset(&se, 0, sizeof(se));
	se.label = name_str;
	se.n = npoints;
	se.t = t;
	se.v = v;
	se.band_lo = lo;
	se.band_hi = hi;
	se.anomaly = anomaly;
	se.color = chart_palette[0];

	format_local(timestamp_to_unix(since), "%Y-%m-%d %H:%M", from, sizeof(from));
	format_local(timestamp_to_unix(until), "%Y-%m-%d %H:%M", to, sizeof(to));
	snprintf(subtitle, sizeof(subtitle), "%s to %s %s, %s point%s, %s anomal%s",
			 from, to, session_zone_abbrev(timestamp_to_unix(until)),
			 group_digits(npoints, n1, sizeof(n1)), npoints == 1 ? "" : "s",
			 group_digits(nanomaly, n2, sizeof(n2)), nanomaly == 1 ? "y" : "ies");

	memset(&spec, 0, sizeof(spec));
	spec.width = width;
	spec.height = height;
	/* a sixth argument, the title, is the reports' (with their totals) */
	spec.title = PG_NARGS() > 5 ? text_to_cstring(PG_GETARG_TEXT_PP(5)) : name_str;
	spec.subtitle = subtitle;
	spec.y_label = "value per minute";
	spec.t_min = timestamp_to_unix(since);
	spec.t_max = timestamp_to_unix(until);
	spec.gap = 90;				/* a missing minute breaks the line */
	spec.nseries = 1;
	spec.series = &se;
	spec.band_label = "expected range";
	spec.anomaly_label = "anomaly";
	spec.utc_offset = session_utc_offset;
	spec.empty_message = "No data in this range";

	result = render_to_bytea(&spec);
	MemoryContextDelete(chart_cxt);
	PG_RETURN_BYTEA_P(result);
}

/* ---------------------------------------------------------------------
 * The line_chart aggregate
 * ---------------------------------------------------------------------
 */

typedef struct LineChartState
{
	int			n;
	int			cap;
	double	   *t;
	double	   *v;				/* NaN: a NULL value, which breaks the line */
	int		   *series;			/* index into names */
	int			nseries;
	char	   *names[CHART_MAX_SERIES];
	Jsonb	   *options;		/* of the first row that had any */
} LineChartState;

/*
 * Transition function of every line_chart form:
 *	(state, ts, value), (state, ts, value, options jsonb),
 *	(state, ts, value, series text, options jsonb)
 * A NULL ts is ignored, a NULL value breaks the line, NaN and infinities are
 * skipped.
 */
Datum
metric_anomaly_line_chart_accum(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt,
				old;
	LineChartState *st;
	int			nargs = PG_NARGS();
	int			series_arg = -1,
				options_arg = -1;
	int			si = 0;
	double		val;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "line_chart transition function called in a non-aggregate context");

	if (nargs == 4)
		options_arg = 3;
	else if (nargs == 5)
	{
		series_arg = 3;
		options_arg = 4;
	}

	old = MemoryContextSwitchTo(aggcxt);
	if (PG_ARGISNULL(0))
	{
		st = palloc0(sizeof(LineChartState));
		st->cap = 1024;
		st->t = palloc(sizeof(double) * st->cap);
		st->v = palloc(sizeof(double) * st->cap);
		st->series = palloc(sizeof(int) * st->cap);
	}
	else
		st = (LineChartState *) PG_GETARG_POINTER(0);

	if (options_arg >= 0 && st->options == NULL && !PG_ARGISNULL(options_arg))
		st->options = DatumGetJsonbPCopy(PG_GETARG_DATUM(options_arg));

	if (PG_ARGISNULL(1) || TIMESTAMP_NOT_FINITE(PG_GETARG_TIMESTAMPTZ(1)))
		goto out;				/* no time, or one that cannot be drawn */
	val = PG_ARGISNULL(2) ? NAN : PG_GETARG_FLOAT8(2);
	if (!PG_ARGISNULL(2) && !isfinite(val))
		goto out;

	if (series_arg >= 0)
	{
		char	   *name;

		/* the row's name is read in the caller's context, not kept */
		MemoryContextSwitchTo(old);
		name = PG_ARGISNULL(series_arg) ? "" :
			text_to_cstring(PG_GETARG_TEXT_PP(series_arg));
		MemoryContextSwitchTo(aggcxt);

		for (si = 0; si < st->nseries; si++)
			if (strcmp(st->names[si], name) == 0)
				break;
		if (si == st->nseries)
		{
			if (st->nseries >= CHART_MAX_SERIES)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("too many series for one chart"),
						 errdetail("A chart draws at most %d series.", CHART_MAX_SERIES)));
			st->names[st->nseries++] = pstrdup(name);
		}
	}
	else if (st->nseries == 0)
		st->names[st->nseries++] = pstrdup("");

	if (st->n >= CHART_MAX_POINTS)
		too_many_points();
	if (st->n == st->cap)
	{
		st->cap *= 2;
		st->t = repalloc(st->t, sizeof(double) * st->cap);
		st->v = repalloc(st->v, sizeof(double) * st->cap);
		st->series = repalloc(st->series, sizeof(int) * st->cap);
	}
	st->t[st->n] = timestamp_to_unix(PG_GETARG_TIMESTAMPTZ(1));
	st->v[st->n] = val;
	st->series[st->n] = si;
	st->n++;

out:
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(st);
}

/* Options of line_chart, parsed. */
typedef struct LineChartOptions
{
	char	   *title;
	char	   *subtitle;
	char	   *label;
	char	   *y_label;
	char	   *y2_label;
	int			width;
	int			height;
	double		gap;
	bool		all_dashed;
	bool		all_markers;
	List	   *right_axis;		/* of char * */
	List	   *dashed;
	List	   *markers;
} LineChartOptions;

/* A list of series names, or true/false for every series when allowed. */
static List *
option_names(const MaChartOptions *o, JsonbValue *v, bool *all)
{
	List	   *names = NIL;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;

	if (all && v->type == jbvBool)
	{
		*all = v->val.boolean;
		return NIL;
	}
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ma_chart_option_error(o, all ? "an array of series names or a boolean" :
							  "an array of series names");
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (elem.type != jbvString)
			ma_chart_option_error(o, "an array of series names");
		names = lappend(names, pnstrdup(elem.val.string.val, elem.val.string.len));
	}
	return names;
}

static bool
name_in(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

/* Parses and checks line_chart's options; unknown keys are an error. */
static void
parse_options(Jsonb *jb, LineChartOptions *o)
{
	MaChartOptions opts;
	JsonbValue	v;

	memset(o, 0, sizeof(*o));
	o->width = 1200;
	o->height = 600;
	if (!ma_chart_options_begin(&opts, jb, "line_chart",
								"{\"title\": \"Orders\", \"width\": 800}"))
		return;
	while (ma_chart_options_next(&opts, &v))
	{
		const char *key = opts.key;

		if (strcmp(key, "title") == 0)
			o->title = ma_chart_option_string(&opts, &v);
		else if (strcmp(key, "subtitle") == 0)
			o->subtitle = ma_chart_option_string(&opts, &v);
		else if (strcmp(key, "label") == 0)
			o->label = ma_chart_option_string(&opts, &v);
		else if (strcmp(key, "y_label") == 0)
			o->y_label = ma_chart_option_string(&opts, &v);
		else if (strcmp(key, "y2_label") == 0)
			o->y2_label = ma_chart_option_string(&opts, &v);
		else if (ma_chart_option_size(&opts, &v, &o->width, &o->height))
			continue;
		else if (strcmp(key, "gap") == 0)
		{
			o->gap = ma_chart_option_number(&opts, &v);
			if (!(o->gap >= 0))
				ma_chart_option_error(&opts, "a number of seconds, 0 or more");
		}
		else if (strcmp(key, "right_axis") == 0)
			o->right_axis = option_names(&opts, &v, NULL);
		else if (strcmp(key, "dashed") == 0)
			o->dashed = option_names(&opts, &v, &o->all_dashed);
		else if (strcmp(key, "markers") == 0)
			o->markers = option_names(&opts, &v, &o->all_markers);
		else
			ma_chart_option_unknown(&opts, "title, subtitle, label, y_label, y2_label, width, height, gap, right_axis, dashed and markers");
	}
}

/* Orders points by series, then time, then arrival. */
typedef struct PointRef
{
	int			series;
	int			idx;
	double		t;
} PointRef;

static int
point_cmp(const void *a, const void *b)
{
	const PointRef *x = a,
			   *y = b;

	if (x->series != y->series)
		return x->series < y->series ? -1 : 1;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

/*
 * Final function: draws the collected points.  No rows gives NULL; rows
 * without a drawable value give a chart saying there is no data.
 */
Datum
metric_anomaly_line_chart_final(PG_FUNCTION_ARGS)
{
	LineChartState *st;
	LineChartOptions o;
	ChartSeries series[CHART_MAX_SERIES];
	ChartLineSpec spec;
	PointRef   *refs;
	double	   *t,
			   *v;
	int			i,
				k;
	bool		multi;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	st = (LineChartState *) PG_GETARG_POINTER(0);
	parse_options(st->options, &o);
	multi = st->nseries > 1 || (st->nseries == 1 && st->names[0][0] != '\0');

	foreach(lc, o.right_axis)
	{
		bool		found = false;

		for (k = 0; k < st->nseries && multi; k++)
			if (strcmp(st->names[k], (char *) lfirst(lc)) == 0)
				found = true;
		if (!found)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("right_axis names series \"%s\", which has no rows",
							(char *) lfirst(lc)),
					 errhint("Name series as the series argument of line_chart(ts, value, series, options) gives them.")));
	}

	refs = palloc(sizeof(PointRef) * (st->n + 1));
	t = palloc(sizeof(double) * (st->n + 1));
	v = palloc(sizeof(double) * (st->n + 1));
	for (i = 0; i < st->n; i++)
	{
		refs[i].series = st->series[i];
		refs[i].idx = i;
		refs[i].t = st->t[i];
	}
	qsort(refs, st->n, sizeof(PointRef), point_cmp);
	for (i = 0; i < st->n; i++)
	{
		t[i] = refs[i].t;
		v[i] = st->v[refs[i].idx];
	}

	memset(series, 0, sizeof(series));
	for (k = 0, i = 0; k < st->nseries; k++)
	{
		ChartSeries *se = &series[k];
		const char *name = st->names[k];
		int			start = i;

		while (i < st->n && refs[i].series == k)
			i++;
		se->t = t + start;
		se->v = v + start;
		se->n = i - start;
		se->label = multi ? name : o.label;
		se->color = chart_palette[k % chart_palette_size];
		se->right_axis = multi && name_in(o.right_axis, name);
		se->dashed = o.all_dashed || name_in(o.dashed, name);
		se->markers = o.all_markers || name_in(o.markers, name);
	}

	memset(&spec, 0, sizeof(spec));
	spec.width = o.width;
	spec.height = o.height;
	spec.title = o.title;
	spec.subtitle = o.subtitle;
	spec.y_label = o.y_label;
	spec.y2_label = o.y2_label;
	spec.gap = o.gap;
	spec.nseries = st->nseries;
	spec.series = series;
	spec.utc_offset = session_utc_offset;
	spec.empty_message = "No data";

	PG_RETURN_BYTEA_P(render_to_bytea(&spec));
}

/* See chart_sql.h: the SQL function called directly, without a catalog lookup. */
bytea *
ma_render_metric_chart(const char *metric, TimestampTz since, TimestampTz until)
{
	return DatumGetByteaPP(DirectFunctionCall5(metric_anomaly_render_metric_chart,
											   CStringGetTextDatum(metric),
											   TimestampTzGetDatum(since),
											   TimestampTzGetDatum(until),
											   Int32GetDatum(1200),
											   Int32GetDatum(600)));
}
