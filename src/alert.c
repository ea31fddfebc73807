/*
 * alert.c
 *		The alert outbox: episodes, threshold rules and routing.
 *
 * Detection calls ma_alerts_after_detection() in its own transaction with the
 * points it evaluated.  For every series and source (its detection method,
 * 3-sigma or robust, and each enabled threshold rule of the metric) the state
 * machine of episode.c, kept in metric_anomaly.alert_episodes so that
 * restarts never repeat an alert, turns the run of minutes into episodes:
 * one opens after N of the last M judged minutes breached (the metric's
 * alert_after and alert_window; for_minutes consecutive minutes for a
 * rule), closes after metric_anomaly.alert_resolve_after normal minutes, is
 * muted within metric_anomaly.alert_cooldown of the previous firing or when
 * older than metric_anomaly.alert_max_age (a backfill; except when
 * evaluate_alerts() replays on request).  A series and source that has
 * never breached keeps no row (it is idle), so the steady state of
 * thousands of quiet series costs two reads per batch of verdicts, not a
 * write per series and minute.
 *
 * Each alert row comes with pg_notify('metric_anomaly', json) and one
 * delivery row per routed channel, in the same transaction.  Also the
 * settings of alerting and the SQL function evaluate_alerts().
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "alert.h"
#include "detect.h"
#include "episode.h"
#include "isolate.h"
#include "pg_compat.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(metric_anomaly_evaluate_alerts);

#define RULE_PREFIX		"threshold:"

/* Settings. */
static int	ma_alert_resolve_after = 5;
static int	ma_alert_cooldown_s = 900;
static int	ma_alert_max_age_s = 3600;
int			ma_alert_retention_s = 30 * 24 * 3600;

/*
 * One run of alerting over a batch of verdicts: the oldest minute that may
 * still alert (a backfill's older episodes are tracked silently;
 * evaluate_alerts() replays on request with no limit), and how many alerts
 * the run wrote.
 */
typedef struct AlertRun
{
	TimestampTz oldest;
	int64		written;
} AlertRun;

/*
 * One series and source: its rule (threshold bounds, N of M) and the state
 * machine of episode.c, a row of alert_episodes.
 */
typedef struct Episode
{
	char	   *source;
	/* rule parameters; need = window = 1 and no bounds for detection */
	bool		is_rule;
	bool		has_above;
	bool		has_below;
	double		above;
	double		below;
	int			need;
	int			window;
	MaEpisodeState st;
	bool		changed;
} Episode;

/* Defines the settings of alerting; called from _PG_init. */
void
ma_alert_define_gucs(void)
{
	DefineCustomIntVariable("metric_anomaly.alert_resolve_after",
							"Consecutive normal minutes after which an episode is resolved.",
							NULL,
							&ma_alert_resolve_after,
							5, 1, 10080,
							PGC_SIGHUP, GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomIntVariable("metric_anomaly.alert_cooldown",
							"Minimum time between two firing alerts of the same series and source; episodes starting sooner are not alerted.",
							NULL,
							&ma_alert_cooldown_s,
							900, 0, 7 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("metric_anomaly.alert_max_age",
							"Episodes detection finds starting longer ago than this (a backfill, a worker that was down) are tracked but not alerted; 0 alerts whatever the age.",
							NULL,
							&ma_alert_max_age_s,
							3600, 0, 365 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("metric_anomaly.alert_retention",
							"How long alerts are kept, with their deliveries, once no delivery of theirs is pending or retrying; 0 keeps them forever.",
							NULL,
							&ma_alert_retention_s,
							30 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}


/*
 * Key of a series and source in the batch's state table: a metric name is
 * up to 200 characters, which is up to 800 bytes.
 */
#define STATE_KEY_LEN	(200 * MAX_MULTIBYTE_CHAR_LEN + 1 + 10 + 64 + 1)

typedef struct StoredState
{
	char		key[STATE_KEY_LEN];
	Episode		ep;				/* state columns only */
} StoredState;

typedef struct SourceTemplate
{
	char	   *metric;
	Episode		ep;				/* rule parameters only */
} SourceTemplate;

static void
state_key(char *key, const char *metric, const char *source)
{
	if (snprintf(key, STATE_KEY_LEN, "%s%c%s", metric, '\x01', source) >= STATE_KEY_LEN)
		elog(ERROR, "metric_anomaly: series name too long for alerting: \"%s\"", metric);
}

static MaStatement rules_stmt = {
	"SELECT r.metric_name, r.rule_name, r.above, r.below, r.for_minutes"
	"  FROM metric_anomaly.alert_rules r"
	" WHERE r.metric_name = ANY ($1) AND r.enabled"
	" ORDER BY r.metric_name, r.rule_name",
	1, {TEXTARRAYOID}
};

/*
 * The enabled threshold rules of the metrics in names (a text[]), as
 * episode templates in metric order.
 */
static List *
load_rules(Datum names)
{
	List	   *rules = NIL;

	ma_execute(&rules_stmt, &names, NULL, SPI_OK_SELECT, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		SourceTemplate *t = palloc0(sizeof(SourceTemplate));

		t->metric = SPI_getvalue(tup, desc, 1);
		t->ep.is_rule = true;
		t->ep.source = psprintf(RULE_PREFIX "%s", SPI_getvalue(tup, desc, 2));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		t->ep.has_above = !isnull;
		t->ep.above = isnull ? 0 : DatumGetFloat8(d);
		d = SPI_getbinval(tup, desc, 4, &isnull);
		t->ep.has_below = !isnull;
		t->ep.below = isnull ? 0 : DatumGetFloat8(d);
		t->ep.need = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		t->ep.window = t->ep.need;
		rules = lappend(rules, t);
	}
	return rules;
}

static MaStatement episode_get_stmt = {
	"SELECT e.metric_name, e.source, e.firing, e.muted, e.episode_start,"
	"       e.breach_streak, e.ok_streak, e.last_minute, e.last_fired_at,"
	"       e.recent_breaches"
	"  FROM metric_anomaly.alert_episodes e"
	" WHERE e.metric_name = ANY ($1)"
	"   FOR UPDATE",
	1, {TEXTARRAYOID}
};

/*
 * Loads (and locks) the stored state of every source of the metrics in
 * names, keyed by state_key().  A series and source without a row is idle.
 */
static HTAB *
load_states(Datum names)
{
	HASHCTL		ctl;
	HTAB	   *states;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = STATE_KEY_LEN;
	ctl.entrysize = sizeof(StoredState);
	ctl.hcxt = CurrentMemoryContext;
	states = hash_create("metric_anomaly alert states", 256, &ctl,
						 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	ma_execute(&episode_get_stmt, &names, NULL, SPI_OK_SELECT, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		char		key[STATE_KEY_LEN];
		StoredState *st;
		Episode    *ep;

		state_key(key, SPI_getvalue(tup, desc, 1), SPI_getvalue(tup, desc, 2));
		st = hash_search(states, key, HASH_ENTER, NULL);
		ep = &st->ep;
		memset(ep, 0, sizeof(*ep));
		ep->st.firing = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		ep->st.muted = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		d = SPI_getbinval(tup, desc, 5, &isnull);
		ep->st.has_start = !isnull;
		ep->st.episode_start = isnull ? 0 : DatumGetTimestampTz(d);
		ep->st.breach_streak = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		ep->st.ok_streak = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		ep->st.last_minute = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
		d = SPI_getbinval(tup, desc, 9, &isnull);
		ep->st.has_fired = !isnull;
		ep->st.last_fired_at = isnull ? 0 : DatumGetTimestampTz(d);
		ep->st.recent = (uint64) DatumGetInt64(SPI_getbinval(tup, desc, 10, &isnull));
		/* a row from before N of M: its streak is its recent breaches */
		if (ep->st.recent == 0 && ep->st.breach_streak > 0)
			ep->st.recent = ep->st.breach_streak >= 64 ? ~UINT64CONST(0) :
				(UINT64CONST(1) << ep->st.breach_streak) - 1;
	}
	return states;
}

/* Copies the stored state of metric and ep->source into ep; true if any. */
static bool
restore_episode(HTAB *states, const char *metric, Episode *ep)
{
	char		key[STATE_KEY_LEN];
	StoredState *st;

	state_key(key, metric, ep->source);
	st = hash_search(states, key, HASH_FIND, NULL);
	ma_episode_init(&ep->st);
	if (st == NULL)
		return false;
	ep->st = st->ep.st;
	return true;
}

static MaStatement episode_put_stmt = {
	"INSERT INTO metric_anomaly.alert_episodes AS e"
	"  (metric_name, source, firing, muted, episode_start,"
	"   breach_streak, ok_streak, last_minute, last_fired_at, recent_breaches)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
	" ON CONFLICT (metric_name, source) DO UPDATE"
	"   SET firing = EXCLUDED.firing, muted = EXCLUDED.muted,"
	"       episode_start = EXCLUDED.episode_start,"
	"       breach_streak = EXCLUDED.breach_streak,"
	"       ok_streak = EXCLUDED.ok_streak,"
	"       last_minute = EXCLUDED.last_minute,"
	"       last_fired_at = EXCLUDED.last_fired_at,"
	"       recent_breaches = EXCLUDED.recent_breaches",
	10, {TEXTOID, TEXTOID, BOOLOID, BOOLOID, TIMESTAMPTZOID, INT4OID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID}
};

/* Stores the state of one series and source. */
static void
store_episode(const char *metric, const Episode *ep)
{
	Datum		values[10];
	char		nulls[10];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(metric);
	values[1] = CStringGetTextDatum(ep->source);
	values[2] = BoolGetDatum(ep->st.firing);
	values[3] = BoolGetDatum(ep->st.muted);
	values[4] = TimestampTzGetDatum(ep->st.episode_start);
	nulls[4] = ep->st.has_start ? ' ' : 'n';
	values[5] = Int32GetDatum(ep->st.breach_streak);
	values[6] = Int32GetDatum(ep->st.ok_streak);
	values[7] = TimestampTzGetDatum(ep->st.last_minute);
	values[8] = TimestampTzGetDatum(ep->st.last_fired_at);
	nulls[8] = ep->st.has_fired ? ' ' : 'n';
	values[9] = Int64GetDatum((int64) ep->st.recent);
	ma_execute(&episode_put_stmt, values, nulls, SPI_OK_INSERT, 0);
}

static MaStatement alert_stmt = {
	"WITH ctx AS (SELECT $4::pg_catalog.jsonb AS j,"
	"       pg_catalog.to_char($2 AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS at),"
	" a AS ("
	"  INSERT INTO metric_anomaly.alerts"
	"    (metric_name, minute, value, context, state, source, episode_start, summary)"
	"  SELECT $1, $2, $3, ctx.j, $5, $6, $7,"
	"    CASE WHEN $5 = 'resolved' THEN"
	"      pg_catalog.format('%s is back to normal at %s UTC (value %s, episode since %s UTC)',"
	"        $1, ctx.at, $3, pg_catalog.to_char($7 AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'))"
	"    WHEN $6 = 'robust' THEN"
	"      pg_catalog.format('%s is anomalous at %s UTC: value %s outside [%s, %s] (expected %s, score %s)',"
	"        $1, ctx.at, $3,"
	"        pg_catalog.round((ctx.j ->> 'lower_boundary')::pg_catalog.numeric, 2),"
	"        pg_catalog.round((ctx.j ->> 'upper_boundary')::pg_catalog.numeric, 2),"
	"        pg_catalog.round((ctx.j ->> 'expected')::pg_catalog.numeric, 2),"
	"        pg_catalog.round((ctx.j ->> 'score')::pg_catalog.numeric, 2))"
	"    WHEN $6 = '3-sigma' THEN"
	"      pg_catalog.format('%s is anomalous at %s UTC: value %s outside [%s, %s] (mean %s, std_dev %s)',"
	"        $1, ctx.at, $3,"
	"        pg_catalog.round((ctx.j ->> 'lower_boundary')::pg_catalog.numeric, 2),"
	"        pg_catalog.round((ctx.j ->> 'upper_boundary')::pg_catalog.numeric, 2),"
	"        pg_catalog.round((ctx.j ->> 'mean')::pg_catalog.numeric, 2),"
	"        pg_catalog.round((ctx.j ->> 'std_dev')::pg_catalog.numeric, 2))"
	"    ELSE"
	"      pg_catalog.format('%s breached rule %s at %s UTC: value %s%s%s for %s minute(s)',"
	"        $1, ctx.j ->> 'rule', ctx.at, $3,"
	"        ' above ' || (ctx.j ->> 'above'), ' below ' || (ctx.j ->> 'below'),"
	"        ctx.j ->> 'for_minutes')"
	"    END"
	"    FROM ctx"
	"  ON CONFLICT ON CONSTRAINT alerts_episode_key DO NOTHING"
	"  RETURNING *),"
	" d AS ("
	"  INSERT INTO metric_anomaly.deliveries (alert_id, channel, idempotency_key)"
	"  SELECT a.id, c.name,"
	"         'ma-' || a.id || '-' || pg_catalog.left(pg_catalog.md5("
	"           pg_catalog.current_database() || '/' || a.id || '/' || c.name || '/' ||"
	"           pg_catalog.date_part('epoch', a.created_at)), 20)"
	"    FROM a CROSS JOIN metric_anomaly.alert_channels c"
	"   WHERE c.enabled"
	"     AND (NOT EXISTS (SELECT 1 FROM metric_anomaly.alert_routes r"
	"                       WHERE r.metric_name = a.metric_name)"
	"          OR EXISTS (SELECT 1 FROM metric_anomaly.alert_routes r"
	"                      WHERE r.metric_name = a.metric_name AND r.channel = c.name))"
	"  RETURNING alert_id)"
	" SELECT a.id, pg_catalog.pg_notify('metric_anomaly', pg_catalog.json_build_object("
	"   'alert_id', a.id, 'metric', a.metric_name,"
	"   'minute', pg_catalog.to_char(a.minute AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	"   'value', a.value, 'state', a.state, 'source', a.source,"
	"   'episode_start', pg_catalog.to_char(a.episode_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	"   'summary', a.summary, 'context', a.context,"
	"   'deliveries', (SELECT pg_catalog.count(*) FROM d))::pg_catalog.text)"
	"   FROM a",
	7, {TEXTOID, TIMESTAMPTZOID, FLOAT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID}
};

/*
 * Writes one alert, its deliveries (one per routed enabled channel) and its
 * notification.  The summary is a link-free sentence built from the context.
 */
static void
write_alert(AlertRun *run, const char *metric, const MaEvaluatedPoint *pt,
			const char *context, const char *state, const Episode *ep)
{
	Datum		values[7];
	char		nulls[7];

	memset(nulls, ' ', sizeof(nulls));
	values[0] = CStringGetTextDatum(metric);
	values[1] = TimestampTzGetDatum(pt->minute);
	values[2] = Float8GetDatum(pt->value);
	values[3] = context ? CStringGetTextDatum(context) : (Datum) 0;
	nulls[3] = context ? ' ' : 'n';
	values[4] = CStringGetTextDatum(state);
	values[5] = CStringGetTextDatum(ep->source);
	values[6] = TimestampTzGetDatum(ep->st.episode_start);

	ma_execute(&alert_stmt, values, nulls, SPI_OK_SELECT, 0);
	run->written += SPI_processed;
}

/* JSON evidence of a threshold rule. */
static char *
rule_context(const Episode *ep)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"method\":\"threshold\",\"rule\":");
	escape_json(&buf, ep->source + strlen(RULE_PREFIX));
	if (ep->has_above && isfinite(ep->above))
		appendStringInfo(&buf, ",\"above\":%s", float8out_internal(ep->above));
	if (ep->has_below && isfinite(ep->below))
		appendStringInfo(&buf, ",\"below\":%s", float8out_internal(ep->below));
	appendStringInfo(&buf, ",\"for_minutes\":%d}", ep->need);
	return buf.data;
}

/* The evidence an alert of this source at this point carries, as text. */
static char *
point_context(const Episode *ep, const MaEvaluatedPoint *pt)
{
	if (ep->is_rule)
		return rule_context(ep);
	return pt->context ? JsonbToCString(NULL, &pt->context->root,
										VARSIZE(pt->context)) : NULL;
}

/* See alert.h. */
void
ma_alert_replay_rule(MaEpisodeRule *rule, int need, int window)
{
	rule->need = need;
	rule->window = Max(need, window);
	rule->resolve_after = ma_alert_resolve_after;
	rule->cooldown_us = (int64) ma_alert_cooldown_s * USECS_PER_SEC;
	rule->oldest = DT_NOBEGIN;
}

/*
 * Runs the state machine of one source over the points of its series,
 * writing the alerts it reports.
 */
static void
step_episode(AlertRun *run, const char *metric, Episode *ep,
			 const MaEvaluatedPoint *pts, int n)
{
	MaEpisodeRule rule;

	rule.need = ep->need;
	rule.window = ep->window;
	rule.resolve_after = ma_alert_resolve_after;
	rule.cooldown_us = (int64) ma_alert_cooldown_s * USECS_PER_SEC;
	rule.oldest = run->oldest;

	for (int i = 0; i < n; i++)
	{
		const MaEvaluatedPoint *pt = &pts[i];
		bool		judged = true;
		bool		breach;
		MaEpisodeEvent ev;

		if (pt->minute <= ep->st.last_minute)
			continue;			/* seen before: never alert twice */
		ep->changed = true;
		if (ep->is_rule)
			breach = (ep->has_above && pt->value > ep->above) ||
				(ep->has_below && pt->value < ep->below);
		else
		{
			judged = pt->evaluated;
			breach = pt->is_anomaly;
		}
		ev = ma_episode_step(&rule, &ep->st, pt->minute, judged, breach);
		if (ev != MA_EPISODE_NONE)
			write_alert(run, metric, pt, point_context(ep, pt),
						ma_episode_event_name(ev), ep);
	}
}

/*
 * Alerting for the points of one series (all of the same metric), through
 * 3-sigma and each of the metric's rules (templates in rules).  State is
 * written only when it is, or was, more than idle: a series that has never
 * breached keeps no row.
 */
static void
alert_series(AlertRun *run, const MaEvaluatedPoint *pts, int n, List *rules,
			 HTAB *states)
{
	const char *metric = pts[0].metric_name;
	List	   *eps = NIL;
	ListCell   *lc;
	Episode    *ep;
	int			first;

	/* the detection source: the method of the first judged point */
	first = 0;
	while (first < n - 1 && !pts[first].evaluated)
		first++;
	ep = palloc0(sizeof(Episode));
	ep->source = (char *) (pts[first].method ? pts[first].method : "3-sigma");
	ep->need = Max(1, pts[first].alert_after);
	ep->window = Max(ep->need, pts[first].alert_window);
	eps = lappend(eps, ep);
	foreach(lc, rules)
	{
		SourceTemplate *t = (SourceTemplate *) lfirst(lc);

		if (strcmp(t->metric, metric) == 0)
		{
			ep = palloc(sizeof(Episode));
			*ep = t->ep;
			eps = lappend(eps, ep);
		}
	}

	foreach(lc, eps)
	{
		bool		stored;

		ep = (Episode *) lfirst(lc);
		stored = restore_episode(states, metric, ep);
		step_episode(run, metric, ep, pts, n);
		if (ep->changed && (stored || !ma_episode_idle(&ep->st)))
			store_episode(metric, ep);
	}
}

/* One series' alerting, run in a subtransaction of its own. */
typedef struct AlertJob
{
	AlertRun   *run;
	const MaEvaluatedPoint *pts;
	int			n;
	List	   *rules;
	HTAB	   *states;
} AlertJob;

static void
alert_job(void *arg)
{
	AlertJob   *job = (AlertJob *) arg;

	alert_series(job->run, job->pts, job->n, job->rules, job->states);
}

/*
 * Alerting over a batch of verdicts.  Points are grouped by metric; the
 * rules and stored states of all their metrics are read in two statements,
 * then each group runs through every source of its metric, in a
 * subtransaction of its own: an error in one series is recorded against it
 * (isolate.c) and the others still alert.
 */
static void
alert_points(AlertRun *run, const MaEvaluatedPoint *points, int npoints)
{
	MemoryContext cxt;
	MemoryContext old;
	Datum	   *names;
	int			nnames = 0;
	Datum		array;
	List	   *rules;
	HTAB	   *states;
	int			i = 0;

	if (npoints == 0)
		return;
	cxt = AllocSetContextCreate(CurrentMemoryContext, "metric_anomaly alerting",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);

	names = palloc(sizeof(Datum) * npoints);
	for (int j = 0; j < npoints; j++)
		if (j == 0 || strcmp(points[j].metric_name, points[j - 1].metric_name) != 0)
			names[nnames++] = CStringGetTextDatum(points[j].metric_name);
	array = PointerGetDatum(construct_array(names, nnames, TEXTOID, -1, false,
											TYPALIGN_INT));
	rules = load_rules(array);
	states = load_states(array);

	while (i < npoints)
	{
		int			j = i + 1;

		while (j < npoints && strcmp(points[j].metric_name, points[i].metric_name) == 0)
			j++;
		{
			AlertJob	job = {run, points + i, j - i, rules, states};

			(void) ma_run_isolated(alert_job, &job, points[i].metric_name,
								   "alerting", 0);
		}
		i = j;
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* See alert.h.  Episodes older than alert_max_age are tracked, not alerted. */
void
ma_alerts_after_detection(const MaEvaluatedPoint *points, int npoints)
{
	AlertRun	run = {DT_NOBEGIN, 0};

	if (ma_alert_max_age_s > 0)
		run.oldest = GetCurrentTransactionStartTimestamp() -
			(int64) ma_alert_max_age_s * USECS_PER_SEC;
	alert_points(&run, points, npoints);
}

/*
 * evaluate_alerts(from, to): runs alerting over the stored verdicts of the
 * minutes in [from, to) of every metric, as detection does after a pass;
 * returns the number of alerts written.  Minutes already seen are skipped.
 */
Datum
metric_anomaly_evaluate_alerts(PG_FUNCTION_ARGS)
{
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[2];
	AlertRun	run = {DT_NOBEGIN, 0};	/* a replay on request: no age limit */
	MaEvaluatedPoint *pts;
	int			ret;

	values[0] = PG_GETARG_DATUM(0);
	values[1] = PG_GETARG_DATUM(1);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	/* settings as the worker reads them, once per series */
	ret = SPI_execute_with_args("WITH c AS ("
								"  SELECT n.metric_name, metric_anomaly.series_settings(n.metric_name) AS s"
								"    FROM (SELECT DISTINCT a.metric_name FROM metric_anomaly.aggregated_metrics a"
								"           WHERE a.metric_timestamp >= $1 AND a.metric_timestamp < $2) n)"
								"SELECT m.metric_name, m.metric_timestamp, m.metric_value,"
								"       m.anomaly_context IS NOT NULL, m.is_anomaly, m.anomaly_context,"
								"       coalesce(m.anomaly_context ->> 'method', c.s ->> 'method', 'robust'),"
								"       (c.s ->> 'alert_after')::numeric::int, (c.s ->> 'alert_window')::numeric::int"
								"  FROM metric_anomaly.aggregated_metrics m"
								"  JOIN c ON c.metric_name = m.metric_name"
								" WHERE m.metric_timestamp >= $1 AND m.metric_timestamp < $2"
								" ORDER BY m.metric_name COLLATE \"C\", m.metric_timestamp",
								2, types, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading metrics failed: %s", SPI_result_code_string(ret));
	if (SPI_processed > (uint64) (MaxAllocSize / sizeof(MaEvaluatedPoint)))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many minutes to evaluate at once"),
				 errhint("Evaluate a shorter range.")));
	pts = palloc0(sizeof(MaEvaluatedPoint) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		pts[i].metric_name = SPI_getvalue(tup, desc, 1);
		pts[i].minute = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		pts[i].value = DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
		pts[i].evaluated = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
		pts[i].is_anomaly = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		pts[i].context = isnull ? NULL : DatumGetJsonbPCopy(d);
		pts[i].method = SPI_getvalue(tup, desc, 7);
		d = SPI_getbinval(tup, desc, 8, &isnull);
		pts[i].alert_after = isnull ? 0 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 9, &isnull);
		pts[i].alert_window = isnull ? 0 : DatumGetInt32(d);
		{
			MaDetectSettings s = {0};

			(void) ma_method_parse(pts[i].method, &s.method);
			s.alert_after = pts[i].alert_after;
			s.alert_window = pts[i].alert_window;
			ma_detect_alert_rule(&s, &pts[i].alert_after, &pts[i].alert_window);
		}
	}
	alert_points(&run, pts, (int) SPI_processed);
	SPI_finish();
	PG_RETURN_INT32((int32) run.written);
}

static MaStatement purge_alerts_stmt = {
	"DELETE FROM metric_anomaly.alerts a"
	" WHERE a.id = ANY (ARRAY("
	"       SELECT o.id FROM metric_anomaly.alerts o"
	"        WHERE o.created_at < $1"
	"          AND NOT EXISTS (SELECT 1 FROM metric_anomaly.deliveries d"
	"                           WHERE d.alert_id = o.id"
	"                             AND d.state IN ('pending', 'failed'))"
	"        ORDER BY o.created_at LIMIT $2))",
	2, {TIMESTAMPTZOID, INT4OID}
};

/*
 * Deletes at most limit alerts created before older_than whose deliveries
 * (deleted with them) are all sent or dead; returns how many it deleted.
 * Episode state lives apart, in alert_episodes, and is kept.
 */
int64
ma_purge_alerts(TimestampTz older_than, int limit)
{
	Datum		args[2];

	args[0] = TimestampTzGetDatum(older_than);
	args[1] = Int32GetDatum(limit);
	return (int64) ma_execute(&purge_alerts_stmt, args, NULL, SPI_OK_DELETE, 0);
}
