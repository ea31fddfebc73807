/*
 * delivery.c
 *		The delivery background worker, test_channel() and the settings of
 *		delivery.
 *
 * The worker claims, sends and records; what a channel sends is the
 * channel's business (channel.h), and the transfers are libcurl's (http.h).
 * Each turn of its loop:
 *	1. drives the transfers in flight for at most TICK_MS, with no
 *	   transaction open, and judges every answer that came in;
 *	2. in one short transaction records what the answers settled: a step
 *	   accepted (steps_done and the state later steps need, so that a retry
 *	   resumes at the first step not accepted), sent, failed with the next
 *	   attempt after an exponential backoff with jitter, or dead; then claims
 *	   more due deliveries with FOR UPDATE SKIP LOCKED, counting the attempt,
 *	   marking them in flight and pushing next_attempt_at forward by a lease,
 *	   and renders their charts; then commits;
 *	3. starts the next request of every delivery whose channel may take
 *	   one now.
 * So no transaction is ever open during network I/O, and a channel that
 * hangs holds only its own slots: at most metric_anomaly.alert_concurrency
 * deliveries are in memory, at most alert_channel_concurrency of one
 * channel, and each channel sends no more requests in any 60 seconds than
 * its rate limit (ma_channel_rate_limit: what the platform documents, e.g.
 * 20 for WeCom and DingTalk robots).  A channel at its limit is left out of
 * the claim, so a burst waits in the table, in order, and is paced rather
 * than dropped or sent into 429s.
 *
 * A worker that dies, or steps aside for a database command, leaves its
 * claimed rows in flight: the next worker (one per database, made unique by
 * the extension's lock MA_LOCK_DELIVERY, taken as the aggregation worker
 * takes its own: worker.c) releases them when it starts, and otherwise their
 * lease expires; either way the alert is sent again with the same
 * Idempotency-Key from the first step not recorded.
 */
#include "postgres.h"

#include <limits.h>
#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "channel.h"
#include "chart_sql.h"
#include "delivery.h"
#include "extension.h"
#include "http.h"
#include "metric_anomaly.h"
#include "pg_compat.h"
#include "rate_limit.h"
#include "report.h"
#include "spi_util.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(metric_anomaly_test_channel);

/* Sleep when nothing is due, and while the extension is missing. */
#define POLL_MS				1000
#define MISSING_POLL_MS		5000

/*
 * Longest wait inside libcurl while transfers run: bounds how late a
 * SIGTERM, a reload or a free slot is noticed.  Answers end the wait at once.
 */
#define TICK_MS				100
/* Longest kept error text. */
#define MAX_ERROR_LEN		500
/* Largest backoff. */
#define MAX_BACKOFF_MS		3600000.0

/* Settings. */
static int	ma_alert_max_attempts = 8;
static int	ma_alert_backoff_ms = 10000;
static int	ma_alert_concurrency = 16;
static int	ma_alert_channel_concurrency = 1;

/*
 * What the worker knows of one channel: its deliveries in memory and the
 * starts of its requests within the rate limit's window.
 */
typedef struct Pace
{
	char	   *name;
	int			active;
	int			ending;			/* of them settled, their outcome being recorded */
	int			reserved;		/* rows a claim is taking, not yet adopted */
	MaRateLimit rate;			/* ma_channel_rate_limit() requests a minute */
} Pace;

/* One claimed delivery, alive until its outcome is recorded. */
typedef struct Delivery
{
	dlist_node	node;			/* in waiting or settled, or in flight */
	dlist_node	fresh_node;		/* in fresh until its claim is committed */
	MemoryContext cxt;
	int64		id;
	int			attempts;
	int			step;			/* requests accepted, this and earlier attempts */
	char	   *state;			/* what earlier answers left for later steps */
	MaChannel	ch;
	MaAlertMessage msg;
	Pace	   *pace;
	MaHttpRequest *req;			/* the next request */
	bool		stepped;		/* a step accepted that is not yet recorded */
	const char *result;			/* NULL while going on; sent, failed, dead */
	long		status;
	char	   *error;
} Delivery;

/* The worker's state across its loop. */
typedef struct Worker
{
	MemoryContext cxt;			/* lives as long as the worker */
	ResourceOwner owner;		/* for signatures built between transactions */
	dlist_head	waiting;		/* have a request, wait for a rate slot */
	dlist_head	settled;		/* to record before going on */
	dlist_head	fresh;			/* claimed in the open transaction */
	int			active;			/* deliveries in memory */
	int			npaces;
	Pace	  **paces;
	TimestampTz next_claim;
	bool		released;		/* interrupted deliveries released */
	bool		claim_reported; /* said that another worker serves */
	bool		missing_logged;
} Worker;

static MaStatement candidates_stmt = {
	"SELECT d.id, d.channel FROM metric_anomaly.deliveries d"
	" WHERE d.id IN (SELECT s.id FROM"
	"   (SELECT e.id, e.next_attempt_at, pg_catalog.row_number() OVER"
	"      (PARTITION BY e.channel ORDER BY e.next_attempt_at, e.id) AS rn"
	"      FROM metric_anomaly.deliveries e"
	"     WHERE e.state IN ('pending', 'failed') AND e.next_attempt_at <= pg_catalog.now()"
	"       AND e.channel <> ALL ($1)) s"
	"   WHERE s.rn <= $2 ORDER BY s.next_attempt_at, s.id LIMIT $3)"
	"   AND d.state IN ('pending', 'failed') AND d.next_attempt_at <= pg_catalog.now()"
	" ORDER BY d.next_attempt_at, d.id"
	" FOR UPDATE OF d SKIP LOCKED",
	3, {TEXTARRAYOID, INT4OID, INT4OID}
};

static MaStatement claim_stmt = {
	"UPDATE metric_anomaly.deliveries d"
	"   SET attempts = d.attempts + 1, in_flight = true,"
	"       last_attempt_at = pg_catalog.now(),"
	"       next_attempt_at = pg_catalog.now() + $2 * interval '1 millisecond'"
	"  FROM metric_anomaly.alerts a, metric_anomaly.alert_channels c"
	" WHERE d.id = ANY ($1) AND a.id = d.alert_id AND c.name = d.channel"
	" RETURNING d.id, d.attempts, d.idempotency_key, c.name, c.kind, c.url, c.secret,"
	"   (c.options -> 'chart') IS DISTINCT FROM 'false'::pg_catalog.jsonb,"
	"   c.options::pg_catalog.text, c.enabled,"
	"   a.id, a.metric_name,"
	"   pg_catalog.to_char(a.minute AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	"   a.value, a.state, a.source,"
	"   pg_catalog.to_char(a.episode_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
	"   a.context::pg_catalog.text, a.summary, a.minute, d.steps_done, d.step_state",
	2, {INT8ARRAYOID, FLOAT8OID}
};

static MaStatement step_stmt = {
	"UPDATE metric_anomaly.deliveries SET steps_done = $2, step_state = $3 WHERE id = $1",
	3, {INT8OID, INT4OID, TEXTOID}
};

static MaStatement outcome_stmt = {
	"UPDATE metric_anomaly.deliveries"
	"   SET state = $2, http_status = $3, last_error = $4, in_flight = false,"
	"       next_attempt_at = CASE WHEN $2 = 'failed'"
	"         THEN pg_catalog.now() + $5 * interval '1 millisecond'"
	"         ELSE next_attempt_at END,"
	"       sent_at = CASE WHEN $2 = 'sent' THEN pg_catalog.now() END"
	" WHERE id = $1",
	5, {INT8OID, TEXTOID, INT4OID, TEXTOID, FLOAT8OID}
};

static MaStatement release_stmt = {
	"UPDATE metric_anomaly.deliveries"
	"   SET in_flight = false, next_attempt_at = pg_catalog.now()"
	" WHERE in_flight AND state IN ('pending', 'failed')",
	0, {InvalidOid}
};

static MaStatement channel_stmt = {
	"SELECT c.kind, c.url, c.secret, c.options::pg_catalog.text,"
	"       pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC',"
	"                          'YYYY-MM-DD\"T\"HH24:MI:00\"Z\"')"
	"  FROM metric_anomaly.alert_channels c WHERE c.name = $1",
	1, {TEXTOID}
};

/* Defines the settings of delivery; called from _PG_init. */
void
ma_delivery_define_gucs(void)
{
	DefineCustomIntVariable("metric_anomaly.alert_max_attempts",
							"Attempts of a delivery before it is dead.",
							NULL,
							&ma_alert_max_attempts,
							8, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("metric_anomaly.alert_backoff",
							"Delay before the second attempt of a delivery; it doubles with each further attempt, with jitter, up to one hour.",
							NULL,
							&ma_alert_backoff_ms,
							10000, 10, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("metric_anomaly.alert_concurrency",
							"Deliveries the delivery worker sends at the same time, over all channels.",
							NULL,
							&ma_alert_concurrency,
							16, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("metric_anomaly.alert_channel_concurrency",
							"Deliveries the delivery worker sends at the same time to one channel.",
							"With 1 a channel receives its alerts in the order they were written.",
							&ma_alert_channel_concurrency,
							1, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

/* Wall clock in milliseconds since the Unix epoch. */
static int64
unix_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();

	return now / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

/* Milliseconds before attempt number attempts + 1: exponential, jittered. */
static double
backoff_ms(int attempts)
{
	double		d = ma_alert_backoff_ms * pow(2.0, Max(attempts - 1, 0));

	if (d > MAX_BACKOFF_MS)
		d = MAX_BACKOFF_MS;
	return d / 2 + MA_RANDOM_FRACTION() * d / 2;
}

/*
 * Milliseconds a claimed delivery stays invisible to other claims: four
 * requests (Feishu's text, token, upload and image) at their timeout, a
 * minute of waiting for a rate slot between them, and ten seconds of margin.
 */
static double
lease_ms(void)
{
	return 4.0 * ma_http_timeout_ms + 70000.0;
}

/* The error text cut to MAX_ERROR_LEN bytes on a character boundary. */
static char *
clip_error(const char *s)
{
	if (s == NULL)
		return NULL;
	return pnstrdup(s, pg_mbcliplen(s, strlen(s), MAX_ERROR_LEN));
}

static void forget(Worker *w, Delivery *d);

/* ---------- pacing ---------- */

/* The pace of a channel, created on first sight. */
static Pace *
pace_of(Worker *w, const char *name)
{
	Pace	   *p;

	for (int i = 0; i < w->npaces; i++)
	{
		if (strcmp(w->paces[i]->name, name) == 0)
			return w->paces[i];
	}
	if (w->npaces == 0)
		w->paces = MemoryContextAlloc(w->cxt, sizeof(Pace *) * 8);
	else if ((w->npaces & (w->npaces - 1)) == 0 && w->npaces >= 8)
		w->paces = repalloc(w->paces, sizeof(Pace *) * w->npaces * 2);
	p = MemoryContextAllocZero(w->cxt, sizeof(Pace));
	p->name = MemoryContextStrdup(w->cxt, name);
	w->paces[w->npaces++] = p;
	return p;
}

/* ---------- the life of a delivery ---------- */

/* Ends a delivery with a result (sent, failed or dead) to record. */
static void
settle(Worker *w, Delivery *d, const char *result, long status, const char *error)
{
	d->result = result;
	d->pace->ending++;
	d->status = status;
	d->error = error ? MemoryContextStrdup(d->cxt, error) : NULL;
	dlist_push_tail(&w->settled, &d->node);
}

/*
 * Builds the next request of d into d->req and queues d: to wait for a rate
 * slot, or, after an accepted step, to record that step first (so that a
 * retry skips it); settles d as sent when no step is left.  A request that
 * cannot be built (an internal error) fails the delivery, to be retried,
 * instead of stopping the worker.
 */
static void
prepare_next(Worker *w, Delivery *d, bool after_step)
{
	MemoryContext old = MemoryContextSwitchTo(d->cxt);
	ResourceOwner owner = CurrentResourceOwner;
	MaHttpRequest *volatile req = NULL;
	char	   *volatile failure = NULL;

	/* hashes and HMACs need a resource owner; between transactions, ours */
	if (owner == NULL)
		CurrentResourceOwner = w->owner;
	PG_TRY();
	{
		req = ma_channel_next_request(&d->ch, &d->msg, d->step, d->state, unix_ms());
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(d->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		failure = edata->message;
	}
	PG_END_TRY();
	CurrentResourceOwner = owner;
	MemoryContextSwitchTo(old);
	d->req = req;
	if (failure)
		settle(w, d, d->attempts < ma_alert_max_attempts ? "failed" : "dead", 0, failure);
	else if (req == NULL)
		settle(w, d, "sent", d->status, NULL);
	else if (after_step)
	{
		d->stepped = true;
		dlist_push_tail(&w->settled, &d->node);
	}
	else
		dlist_push_tail(&w->waiting, &d->node);
}

/* Judges an answer and moves d on: to its next step, or settled. */
static void
judge_answer(Worker *w, Delivery *d, const MaHttpResponse *resp)
{
	MemoryContext old = MemoryContextSwitchTo(d->cxt);
	char	   *state = d->state;
	char	   *err;
	MaVerdict	v;

	v = ma_channel_judge(&d->ch, &d->msg, d->step, resp, &state, &err);
	MemoryContextSwitchTo(old);
	if (resp->aborted)
		CHECK_FOR_INTERRUPTS();
	d->status = resp->status;
	if (v == MA_ACCEPTED)
	{
		d->step++;
		d->state = state;
		prepare_next(w, d, true);
		return;
	}
	settle(w, d, (v == MA_RETRY && d->attempts < ma_alert_max_attempts) ? "failed" : "dead",
		   resp->status, err);
	ereport(LOG,
			(errmsg("metric_anomaly: delivery %lld of alert %lld to channel \"%s\" failed on attempt %d (%s): %s",
					(long long) d->id, (long long) d->msg.alert_id, d->ch.name,
					d->attempts, d->result, err)));
}

/*
 * Starts the waiting requests whose channel has a rate slot; returns the
 * milliseconds until the next waiting one may start (-1: none waits).
 */
static long
start_waiting(Worker *w)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		soonest = -1;
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &w->waiting)
	{
		Delivery   *d = dlist_container(Delivery, node, it.cur);
		int64		wait = ma_rate_wait_us(&d->pace->rate, now);

		if (wait > 0)
		{
			if (soonest < 0 || wait < soonest)
				soonest = wait;
			continue;
		}
		dlist_delete(&d->node);
		ma_rate_take(&d->pace->rate, now);
		ma_http_multi_start(d->req, d);
	}
	return soonest < 0 ? -1 : (long) ((soonest + 999) / 1000);
}

/* Judges every answer that has come in. */
static void
collect_answers(Worker *w, MemoryContext loop_ctx)
{
	void	   *tag;
	MaHttpResponse resp;
	MemoryContext old = MemoryContextSwitchTo(loop_ctx);

	while (ma_http_multi_done(&tag, &resp))
		judge_answer(w, (Delivery *) tag, &resp);
	MemoryContextSwitchTo(old);
}

/* ---------- transactions ---------- */

/* Starts a short transaction with SPI connected and a snapshot. */
static void
begin_xact(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	ma_spi_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commits the transaction begun by begin_xact(). */
static void
end_xact(void)
{
	ma_spi_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Records a settled delivery: a step accepted, or its outcome. */
static void
record(const Delivery *d)
{
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	char	   *err;

	values[0] = Int64GetDatum(d->id);
	if (d->stepped)
	{
		values[1] = Int32GetDatum(d->step);
		values[2] = d->state ? CStringGetTextDatum(d->state) : (Datum) 0;
		nulls[2] = d->state ? ' ' : 'n';
		ma_execute(&step_stmt, values, nulls, SPI_OK_UPDATE, 0);
		return;
	}
	err = clip_error(d->error);
	values[1] = CStringGetTextDatum(d->result);
	values[2] = Int32GetDatum((int32) d->status);
	nulls[2] = d->status == 0 ? 'n' : ' ';
	values[3] = err ? CStringGetTextDatum(err) : (Datum) 0;
	nulls[3] = err ? ' ' : 'n';
	values[4] = Float8GetDatum(backoff_ms(d->attempts));
	ma_execute(&outcome_stmt, values, nulls, SPI_OK_UPDATE, 0);
}

/* Records every settled delivery (in the caller's transaction). */
static void
record_settled(Worker *w)
{
	dlist_iter	it;

	dlist_foreach(it, &w->settled)
		record(dlist_container(Delivery, node, it.cur));
}

/*
 * After the records are committed (or lost with an error: then the rows
 * stay in flight and their lease brings them back): deliveries that
 * stepped go on, the others are done with.
 */
static void
release_settled(Worker *w, bool committed)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &w->settled)
	{
		Delivery   *d = dlist_container(Delivery, node, it.cur);

		dlist_delete(&d->node);
		if (d->stepped && committed)
		{
			d->stepped = false;
			dlist_push_tail(&w->waiting, &d->node);
			continue;
		}
		forget(w, d);
		/* its channel has a free slot now: look for what waits for it */
		w->next_claim = GetCurrentTimestamp();
	}
}

/* Frees a delivery that is in no list. */
static void
forget(Worker *w, Delivery *d)
{
	if (d->result)
		d->pace->ending--;
	d->pace->active--;
	w->active--;
	MemoryContextDelete(d->cxt);
}

/*
 * After an error in the claiming transaction its claims are rolled back:
 * the deliveries adopted in it must not be sent (the next claim takes the
 * rows again).  They have not been started yet.
 */
static void
drop_fresh(Worker *w)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &w->fresh)
	{
		Delivery   *d = dlist_container(Delivery, fresh_node, it.cur);

		dlist_delete(&d->fresh_node);
		dlist_delete(&d->node);
		forget(w, d);
	}
}

/* ---------- claiming ---------- */

/*
 * Renders the chart of the alert's last three hours, in a subtransaction so
 * that a failing chart never blocks the alert.  Returns NULL without one.
 */
static char *
render_chart(const char *metric, TimestampTz minute, size_t *len, MemoryContext keep)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile png = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		bytea	   *b = ma_render_metric_chart(metric, minute - 3 * USECS_PER_HOUR,
											   minute + USECS_PER_MINUTE);

		*len = VARSIZE_ANY_EXHDR(b);
		png = MemoryContextAlloc(keep, *len);
		memcpy(png, VARDATA_ANY(b), *len);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
		ereport(WARNING,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("could not render the chart of metric \"%s\", sending the alert without it", metric),
				 errdetail("%s", edata->message)));
		FreeErrorData(edata);
		png = NULL;
	}
	PG_END_TRY();
	return png;
}

/* Column col of an SPI row as a string in the current context, or NULL. */
static char *
getstr(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *s = SPI_getvalue(tup, desc, col);

	return s ? pstrdup(s) : NULL;
}

static bool
getbool(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return !isnull && DatumGetBool(d);
}

/* Fills d from a row of claim_stmt (in d's context). */
static void
read_claimed(Delivery *d, HeapTuple tup, TupleDesc desc, const char **kind)
{
	bool		isnull;

	d->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	d->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	d->msg.idempotency_key = getstr(tup, desc, 3);
	d->ch.name = getstr(tup, desc, 4);
	*kind = getstr(tup, desc, 5);
	d->ch.url = getstr(tup, desc, 6);
	d->ch.secret = getstr(tup, desc, 7);
	d->ch.chart = getbool(tup, desc, 8);
	d->ch.options = getstr(tup, desc, 9);
	d->msg.alert_id = DatumGetInt64(SPI_getbinval(tup, desc, 11, &isnull));
	d->msg.metric = getstr(tup, desc, 12);
	d->msg.minute = getstr(tup, desc, 13);
	d->msg.value = DatumGetFloat8(SPI_getbinval(tup, desc, 14, &isnull));
	d->msg.state = getstr(tup, desc, 15);
	d->msg.source = getstr(tup, desc, 16);
	d->msg.episode_start = getstr(tup, desc, 17);
	d->msg.context = getstr(tup, desc, 18);
	d->msg.summary = getstr(tup, desc, 19);
	d->step = DatumGetInt32(SPI_getbinval(tup, desc, 21, &isnull));
	d->state = getstr(tup, desc, 22);
}

/* Why a claimed delivery must not be sent at all, or NULL. */
static const char *
refusal(const Delivery *d, bool enabled)
{
	char	   *reason;

	if (d->ch.kind == NULL)
		return "unknown channel kind";
	if (!enabled)
		return "channel is disabled";
	if (d->attempts > ma_alert_max_attempts)
		return "attempts exhausted (the last one was interrupted)";
	if (!ma_channel_url_allowed(&d->ch, &reason))
		return reason;
	return NULL;
}

/*
 * Takes in one claimed row: a delivery in its own context, its chart
 * rendered when the channel carries images, its first request prepared.
 */
static void
adopt(Worker *w, HeapTuple tup, TupleDesc desc)
{
	MemoryContext cxt = AllocSetContextCreate(w->cxt, "metric_anomaly delivery",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Delivery   *d = palloc0(sizeof(Delivery));
	const char *kind;
	const char *refused;
	bool		isnull;

	d->cxt = cxt;
	dlist_push_tail(&w->fresh, &d->fresh_node);
	read_claimed(d, tup, desc, &kind);
	d->ch.kind = ma_channel_kind_by_name(kind);
	d->pace = pace_of(w, d->ch.name);
	d->pace->active++;
	w->active++;
	refused = refusal(d, getbool(tup, desc, 10));
	MemoryContextSwitchTo(old);
	if (refused)
	{
		settle(w, d, "dead", 0, refused);
		return;
	}
	ma_rate_set_limit(&d->pace->rate, ma_channel_rate_limit(&d->ch), w->cxt);
	/* a report run carries its own PNG (report.c) */
	if (ma_channel_carries_images(&d->ch) && strcmp(d->msg.state, "report") == 0)
		d->msg.png = ma_report_png(d->msg.alert_id, &d->msg.png_len, cxt);
	else if (ma_channel_carries_images(&d->ch))
		d->msg.png = render_chart(d->msg.metric,
								  DatumGetTimestampTz(SPI_getbinval(tup, desc, 20, &isnull)),
								  &d->msg.png_len, cxt);
	prepare_next(w, d, false);
}

/*
 * How many deliveries channel p may take now: its free concurrency slots,
 * and no more than its rate limit lets start.  Deliveries whose outcome is
 * recorded in this same transaction free their slots already (should the
 * transaction fail, the new claims go with it), so a channel's next
 * delivery is claimed in the turn its previous one ends.
 */
static int
channel_budget(const Pace *p, TimestampTz now)
{
	int			free = ma_alert_channel_concurrency - (p->active - p->ending);

	if (free <= 0)
		return 0;
	return Max(ma_rate_free(&p->rate, now, free) - p->reserved, 0);
}

/* The channels that can take nothing now, as a text[] for the claim. */
static Datum
full_channels(Worker *w, TimestampTz now)
{
	ArrayBuildState *abs = initArrayResult(TEXTOID, CurrentMemoryContext, false);

	for (int i = 0; i < w->npaces; i++)
	{
		if (channel_budget(w->paces[i], now) == 0)
			accumArrayResult(abs, CStringGetTextDatum(w->paces[i]->name), false,
							 TEXTOID, CurrentMemoryContext);
	}
	return makeArrayResult(abs, CurrentMemoryContext);
}

/*
 * Claims as many due deliveries as the limits allow (see the file header)
 * and returns how many; runs in a transaction with SPI connected.
 */
static int
claim(Worker *w, int room)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[3];
	ArrayBuildState *ids = initArrayResult(INT8OID, CurrentMemoryContext, false);
	int			n = 0;
	uint64		rows;
	SPITupleTable *tt;

	/* an error in an earlier claim may have left reservations behind */
	for (int i = 0; i < w->npaces; i++)
		w->paces[i]->reserved = 0;
	args[0] = full_channels(w, now);
	args[1] = Int32GetDatum(ma_alert_channel_concurrency);
	args[2] = Int32GetDatum(room);
	rows = ma_execute(&candidates_stmt, args, NULL, SPI_OK_SELECT, 0);
	for (uint64 i = 0; i < rows; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *channel = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		Pace	   *p = pace_of(w, channel);
		bool		isnull;

		/* the query knows no rates: the rows over a channel's budget wait */
		if (channel_budget(p, now) <= 0)
			continue;
		p->reserved++;
		accumArrayResult(ids, SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull),
						 false, INT8OID, CurrentMemoryContext);
		n++;
	}
	for (int i = 0; i < w->npaces; i++)
		w->paces[i]->reserved = 0;
	if (n == 0)
		return 0;
	args[0] = makeArrayResult(ids, CurrentMemoryContext);
	args[1] = Float8GetDatum(lease_ms());
	rows = ma_execute(&claim_stmt, args, NULL, SPI_OK_UPDATE_RETURNING, 0);
	/* charts run SPI of their own: keep hold of this result */
	tt = SPI_tuptable;
	for (uint64 i = 0; i < rows; i++)
		adopt(w, tt->vals[i], tt->tupdesc);
	return n;
}

/* ---------- the worker ---------- */

/*
 * Releases, once the worker serves the database, the deliveries a
 * predecessor left in flight.
 */
static void
release_interrupted(Worker *w)
{
	uint64		n = ma_execute(&release_stmt, NULL, NULL, SPI_OK_UPDATE, 0);

	w->released = true;
	if (n > 0)
		ereport(LOG,
				(errmsg("metric_anomaly: %llu interrupted deliveries will be sent again",
						(unsigned long long) n)));
}

/*
 * Does this worker serve the database (its lock is claimed before the
 * extension exists, so start_worker() sees it), with the extension there
 * and at this library's version?  Says once when it is missing.
 */
static bool
worker_ready(Worker *w)
{
	if (!ma_worker_claim(MA_LOCK_DELIVERY, &w->claim_reported))
		return false;
	if (OidIsValid(get_extension_oid(MA_EXTENSION_NAME, true)))
	{
		w->missing_logged = false;
		return ma_extension_is_current();	/* extension.c says why not */
	}
	if (!w->missing_logged)
		ereport(LOG,
				(errmsg("metric_anomaly: extension \"%s\" is not installed in database \"%s\", delivery waits for it",
						MA_EXTENSION_NAME, get_database_name(MyDatabaseId))));
	w->missing_logged = true;
	return false;
}

/*
 * Step 2 of the file header: one transaction recording what is settled and
 * claiming what there is room for.  A claim that found work is repeated at
 * the next turn (a channel limited to one delivery at a time has more due
 * behind the one it took); one that found none waits POLL_MS
 * (MISSING_POLL_MS while the extension is missing).
 */
static void
record_and_claim(Worker *w)
{
	TimestampTz now = GetCurrentTimestamp();
	int			room = ma_alert_concurrency - w->active;
	bool		claiming = room > 0 && now >= w->next_claim;

	if (dlist_is_empty(&w->settled) && !claiming)
		return;
	begin_xact("recording and claiming alert deliveries");
	if (!worker_ready(w))
	{
		end_xact();
		release_settled(w, false);
		w->next_claim = TimestampTzPlusMilliseconds(now, MISSING_POLL_MS);
		return;
	}
	if (!w->released)
		release_interrupted(w);
	/* claimed rows can settle at once (refused ones): record after claiming */
	if (claiming)
		w->next_claim = claim(w, room) > 0 ? now : TimestampTzPlusMilliseconds(now, POLL_MS);
	record_settled(w);
	end_xact();
	dlist_init(&w->fresh);
	release_settled(w, true);
}

/* Milliseconds from now until ts, at least 0. */
static long
ms_until(TimestampTz ts)
{
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), ts);
}

/*
 * Starts what may start, then waits: in libcurl while transfers run, else on
 * the latch, never past the next claim or rate slot.
 */
static void
wait_for_work(Worker *w)
{
	long		slot_ms = start_waiting(w);
	long		wait_ms = ms_until(w->next_claim);

	if (w->active >= ma_alert_concurrency)
		wait_ms = POLL_MS;		/* no room: only answers or slots matter */
	if (slot_ms >= 0)
		wait_ms = Min(wait_ms, slot_ms);
	if (ma_http_multi_running() > 0)
		ma_http_multi_wait((int) Min(wait_ms, TICK_MS));
	else if (wait_ms > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wait_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * One turn of the loop (see the file header).  Waiting is not busy: a
 * database command the workers give way to does not wait for it.  An error
 * is reported and the transaction aborted, and the worker goes on after a
 * pause instead of exiting (what the error left in flight comes back when
 * its lease expires).
 */
static void
delivery_turn(Worker *w, MemoryContext loop_ctx)
{
	wait_for_work(w);
	CHECK_FOR_INTERRUPTS();
	ma_worker_set_busy(true);
	PG_TRY();
	{
		collect_answers(w, loop_ctx);
		record_and_claim(w);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(loop_ctx);
		/* stepping aside leaves rows in flight: sent again, same key */
		ma_worker_leave_if_stepping_aside();
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		drop_fresh(w);
		release_settled(w, false);
		w->next_claim = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), MISSING_POLL_MS);
	}
	PG_END_TRY();
	ma_worker_set_busy(false);
}

/* Entry point of the delivery worker; main_arg is the database OID. */
void
ma_delivery_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext loop_ctx;
	Worker		w;

	ma_worker_connect(dboid, MA_DELIVERY_BGW_TYPE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
	/*
	 * A claim's commit must reach disk before its deliveries are sent: it
	 * flushes the WAL before it, which makes the (asynchronous) commit of
	 * the pass that wrote the alert durable too (pass.c), so no crash can
	 * take back an alert already sent.
	 */
	if (synchronous_commit < SYNCHRONOUS_COMMIT_LOCAL_FLUSH)
		SetConfigOption("synchronous_commit", "local", PGC_USERSET, PGC_S_SESSION);

	memset(&w, 0, sizeof(w));
	w.cxt = AllocSetContextCreate(TopMemoryContext, "metric_anomaly deliveries",
								  ALLOCSET_DEFAULT_SIZES);
	w.owner = ResourceOwnerCreate(NULL, "metric_anomaly delivery");
	dlist_init(&w.waiting);
	dlist_init(&w.settled);
	dlist_init(&w.fresh);
	w.next_claim = GetCurrentTimestamp();
	loop_ctx = AllocSetContextCreate(TopMemoryContext, "metric_anomaly delivery loop",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(DEBUG1, (errmsg("metric_anomaly: delivery worker started for database %u", dboid)));

	for (;;)
	{
		(void) ma_worker_loop_top();
		MemoryContextReset(loop_ctx);
		delivery_turn(&w, loop_ctx);
	}
}

/* ---------- test_channel() ---------- */

/* Reads channel `name` for test_channel(); *minute is now, as alerts show it. */
static void
read_test_channel(const char *name, MaChannel *ch, char **minute)
{
	Datum		args[1];
	HeapTuple	tup;
	TupleDesc	desc;
	char	   *kind;
	char	   *reason;

	ma_spi_connect();
	args[0] = CStringGetTextDatum(name);
	if (ma_execute(&channel_stmt, args, NULL, SPI_OK_SELECT, 1) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("alert channel \"%s\" does not exist", name),
				 errhint("Create it in metric_anomaly.alert_channels.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	kind = SPI_getvalue(tup, desc, 1);
	ch->name = pstrdup(name);
	ch->kind = ma_channel_kind_by_name(kind);
	ch->url = getstr(tup, desc, 2);
	ch->secret = getstr(tup, desc, 3);
	ch->options = getstr(tup, desc, 4);
	ch->chart = false;
	*minute = getstr(tup, desc, 5);
	ma_spi_finish();

	if (ch->kind == NULL)
		elog(ERROR, "unknown channel kind \"%s\"", kind);
	if (!ma_channel_url_allowed(ch, &reason))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alert channel \"%s\" cannot be used: %s", name, reason),
				 errhint("Fix the channel url or metric_anomaly.webhook_allowed_hosts.")));
}

/*
 * test_channel(name): sends a test message to the channel from this session,
 * step by step as the worker would, and returns the HTTP status of the last
 * request (0 without an answer).  Problems are warnings, not errors, so the
 * status can be seen.
 */
Datum
metric_anomaly_test_channel(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MaChannel	ch;
	MaAlertMessage msg;
	MaHttpRequest *req;
	MaHttpResponse resp;
	char	   *state = NULL;
	int64		now_ms = unix_ms();
	int			step = 0;

	memset(&ch, 0, sizeof(ch));
	memset(&msg, 0, sizeof(msg));
	memset(&resp, 0, sizeof(resp));
	read_test_channel(name, &ch, &msg.minute);
	msg.metric = "metric_anomaly_test";
	msg.state = "firing";
	msg.source = "test";
	msg.episode_start = msg.minute;
	msg.summary = psprintf("Test message from metric_anomaly for channel %s", name);
	msg.idempotency_key = psprintf("ma-test-%s-" INT64_FORMAT, name, now_ms);
	msg.test = true;

	while ((req = ma_channel_next_request(&ch, &msg, step, state, now_ms)) != NULL)
	{
		char	   *err;

		ma_http_post(req, &resp);
		CHECK_FOR_INTERRUPTS();
		if (ma_channel_judge(&ch, &msg, step, &resp, &state, &err) != MA_ACCEPTED)
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 resp.error ? errmsg("test message to alert channel \"%s\" failed: %s", name, resp.error)
					 : errmsg("alert channel \"%s\" refused the test message: %s", name, err)));
			break;
		}
		step++;
	}
	PG_RETURN_INT32((int32) resp.status);
}
