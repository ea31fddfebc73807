/*
 * delivery.c
 *		The delivery background worker, test_channel() and
 *		start_delivery_worker().
 *
 * One loop iteration handles one delivery in three steps, so that no
 * transaction is ever open during network I/O:
 *	1. a short transaction claims the most overdue pending or failed
 *	   delivery with FOR UPDATE SKIP LOCKED, counts the attempt, marks it in
 *	   flight and pushes next_attempt_at forward by a lease; it renders the
 *	   chart when the channel carries images (if render_metric_chart exists)
 *	   and builds the requests; then it commits;
 *	2. the requests are posted with libcurl;
 *	3. a second short transaction records the outcome: sent; failed with the
 *	   next attempt after an exponential backoff with jitter (transport
 *	   errors, timeouts, 408, 429, 5xx, platform error codes); dead (other
 *	   4xx, redirects, refused hosts, attempts exhausted).  A delivery of
 *	   several requests (WeCom: markdown, then image) records each accepted
 *	   request in a short transaction, so a retry sends only the rest.
 * A worker that dies in step 2 leaves the row in flight: the next worker
 * (there is one per database, guarded by a lock: worker.c) releases such
 * rows when it starts, and otherwise the lease expires; either way the alert
 * is sent again with the same Idempotency-Key.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "mb/pg_wchar.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#endif

#include "alert.h"
#include "channel.h"
#include "delivery.h"
#include "extension.h"
#include "http.h"
#include "metric_anomaly.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(metric_anomaly_test_channel);

/* Sleep when nothing is due, and while the extension is missing. */
#define POLL_MS				1000
#define MISSING_POLL_MS		5000
/* Longest kept error text. */
#define MAX_ERROR_LEN		500
/* Largest backoff. */
#define MAX_BACKOFF_MS		3600000.0

/* A claimed delivery with everything needed to send it. */
typedef struct Claimed
{
	int64		delivery_id;
	int			attempts;
	int			steps_done;		/* requests accepted by earlier attempts */
	bool		enabled;
	MaChannel	ch;
	MaAlertMessage msg;
	char	   *png;
	size_t		png_len;
	List	   *requests;
	char	   *refused;		/* why it must not be sent at all, or NULL */
} Claimed;

/* What an attempt came to. */
typedef struct Outcome
{
	const char *state;			/* sent, failed, dead */
	long		status;
	char	   *error;
	bool		retry;
} Outcome;

static void begin_xact(const char *activity);
static void end_xact(void);
static void record_step(const Claimed *c, int done);

static bool missing_logged = false;
static bool have_lock = false;

/* Wall clock in milliseconds since the Unix epoch. */
static int64
unix_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();

	return now / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;
}

/* A uniform random number in [0, 1). */
static double
random_fraction(void)
{
#if PG_VERSION_NUM >= 150000
	return pg_prng_double(&pg_global_prng_state);
#else
	return (double) random() / ((double) MAX_RANDOM_VALUE + 1);
#endif
}

/* Milliseconds before attempt number attempts + 1: exponential, jittered. */
static double
backoff_ms(int attempts)
{
	double		d = ma_alert_backoff_ms * pow(2.0, Max(attempts - 1, 0));

	if (d > MAX_BACKOFF_MS)
		d = MAX_BACKOFF_MS;
	return d / 2 + random_fraction() * d / 2;
}

/* Milliseconds a claimed delivery stays invisible to other claims. */
static double
lease_ms(void)
{
	return 3.0 * ma_http_timeout_ms + 10000.0;
}

/* The error text cut to MAX_ERROR_LEN bytes on a character boundary. */
static char *
clip_error(const char *s)
{
	int			len;

	if (s == NULL)
		return NULL;
	len = pg_mbcliplen(s, strlen(s), MAX_ERROR_LEN);
	return pnstrdup(s, len);
}

/*
 * Renders the chart of the alert's last three hours through
 * metric_anomaly.render_metric_chart() when it exists, in a subtransaction
 * so that a failing chart never blocks the alert.  Returns NULL without one.
 */
static char *
render_chart(const char *metric, Datum minute, size_t *len, MemoryContext keep)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile png = NULL;
	int			ret;

	ret = SPI_execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_proc p"
					  "  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
					  " WHERE n.nspname = 'metric_anomaly' AND p.proname = 'render_metric_chart')",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "looking up render_metric_chart failed");
	{
		bool		isnull;

		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
			return NULL;
	}

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);
	PG_TRY();
	{
		Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
		Datum		values[2];
		bool		isnull;

		values[0] = CStringGetTextDatum(metric);
		values[1] = minute;
		ret = SPI_execute_with_args("SELECT metric_anomaly.render_metric_chart($1,"
									" $2 - interval '3 hours', $2 + interval '1 minute')",
									2, types, values, NULL, false, 1);
		if (ret == SPI_OK_SELECT && SPI_processed == 1)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull)
			{
				bytea	   *b = DatumGetByteaPP(d);

				*len = VARSIZE_ANY_EXHDR(b);
				png = MemoryContextAlloc(keep, *len);
				memcpy(png, VARDATA_ANY(b), *len);
			}
		}
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

/* Column col of an SPI row as a string in keep, or NULL. */
static char *
getstr(HeapTuple tup, TupleDesc desc, int col, MemoryContext keep)
{
	char	   *s = SPI_getvalue(tup, desc, col);

	return s ? MemoryContextStrdup(keep, s) : NULL;
}

/*
 * Claims the most overdue delivery (see the file header); returns NULL when
 * none is due.  Runs inside a transaction with SPI connected; the result
 * lives in keep.
 */
static Claimed *
claim_one(MemoryContext keep)
{
	Oid			types[1] = {FLOAT8OID};
	Datum		values[1];
	HeapTuple	tup;
	TupleDesc	desc;
	Claimed    *c;
	bool		isnull;
	Datum		minute;
	char	   *kind;
	int			ret;
	MemoryContext old;

	values[0] = Float8GetDatum(lease_ms());
	ret = SPI_execute_with_args(
								"WITH due AS ("
								"  SELECT d.id FROM metric_anomaly.deliveries d"
								"   WHERE d.state IN ('pending', 'failed')"
								"     AND d.next_attempt_at <= pg_catalog.now()"
								"   ORDER BY d.next_attempt_at, d.id"
								"   LIMIT 1 FOR UPDATE OF d SKIP LOCKED)"
								" UPDATE metric_anomaly.deliveries d"
								"    SET attempts = d.attempts + 1, in_flight = true,"
								"        last_attempt_at = pg_catalog.now(),"
								"        next_attempt_at = pg_catalog.now() + $1 * interval '1 millisecond'"
								"   FROM due, metric_anomaly.alerts a, metric_anomaly.alert_channels c"
								"  WHERE d.id = due.id AND a.id = d.alert_id AND c.name = d.channel"
								" RETURNING d.id, d.attempts, d.idempotency_key, c.name, c.kind, c.url, c.secret,"
								"   (c.options -> 'chart') IS DISTINCT FROM 'false'::pg_catalog.jsonb,"
								"   c.options ->> 'channel', c.enabled,"
								"   a.id, a.metric_name,"
								"   pg_catalog.to_char(a.minute AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
								"   a.value, a.state, a.source,"
								"   pg_catalog.to_char(a.episode_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
								"   a.context::pg_catalog.text, a.summary, a.minute, d.steps_done",
								1, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "claiming a delivery failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return NULL;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	c = MemoryContextAllocZero(keep, sizeof(Claimed));
	c->delivery_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	c->attempts = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
	c->msg.idempotency_key = getstr(tup, desc, 3, keep);
	c->ch.name = getstr(tup, desc, 4, keep);
	kind = getstr(tup, desc, 5, keep);
	c->ch.url = getstr(tup, desc, 6, keep);
	c->ch.secret = getstr(tup, desc, 7, keep);
	c->ch.chart = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
	c->ch.slack_channel = getstr(tup, desc, 9, keep);
	c->enabled = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
	c->msg.alert_id = DatumGetInt64(SPI_getbinval(tup, desc, 11, &isnull));
	c->msg.metric = getstr(tup, desc, 12, keep);
	c->msg.minute = getstr(tup, desc, 13, keep);
	c->msg.value = DatumGetFloat8(SPI_getbinval(tup, desc, 14, &isnull));
	c->msg.state = getstr(tup, desc, 15, keep);
	c->msg.source = getstr(tup, desc, 16, keep);
	c->msg.episode_start = getstr(tup, desc, 17, keep);
	c->msg.context = getstr(tup, desc, 18, keep);
	c->msg.summary = getstr(tup, desc, 19, keep);
	minute = SPI_getbinval(tup, desc, 20, &isnull);
	c->steps_done = DatumGetInt32(SPI_getbinval(tup, desc, 21, &isnull));

	if (!ma_channel_kind_from_name(kind, &c->ch.kind))
		c->refused = MemoryContextStrdup(keep, "unknown channel kind");
	else if (!c->enabled)
		c->refused = MemoryContextStrdup(keep, "channel is disabled");
	else if (c->attempts > ma_alert_max_attempts)
		c->refused = MemoryContextStrdup(keep, "attempts exhausted (the last one was interrupted)");
	else
	{
		char	   *reason;

		if (!ma_http_url_allowed(c->ch.url, &reason))
			c->refused = MemoryContextStrdup(keep, reason);
	}
	if (c->refused)
		return c;

	if (ma_channel_carries_images(&c->ch))
		c->png = render_chart(c->msg.metric, minute, &c->png_len, keep);

	/* Signatures need a resource owner, so requests are built in here. */
	old = MemoryContextSwitchTo(keep);
	c->requests = ma_channel_build(&c->ch, &c->msg, c->png, c->png_len, unix_ms());
	MemoryContextSwitchTo(old);
	return c;
}

/* Judges one answer; true when the delivery may go on with the next request. */
static bool
judge(const MaChannel *ch, const MaHttpResponse *resp, Outcome *out)
{
	char	   *err;

	out->status = resp->status;
	if (resp->error)
	{
		out->error = psprintf("%s%s", resp->timed_out ? "timeout: " : "", resp->error);
		out->retry = true;
		return false;
	}
	if (ma_channel_response_ok(ch, resp, &err))
		return true;
	out->error = err;
	if (resp->status >= 300 && resp->status < 400)
	{
		out->error = psprintf("HTTP status %ld (redirects are not followed)", resp->status);
		out->retry = false;
	}
	else if (resp->status >= 400 && resp->status < 500)
		out->retry = (resp->status == 408 || resp->status == 429);
	else
		out->retry = true;
	return false;
}

/* Posts one request and judges it. */
static bool
post_one(const MaChannel *ch, const MaHttpRequest *req, MaHttpResponse *resp, Outcome *out)
{
	ma_http_post(req, resp);
	if (resp->aborted)
		CHECK_FOR_INTERRUPTS();
	return judge(ch, resp, out);
}

/* Posts the requests of a claimed delivery; no transaction is open. */
static void
send_claimed(Claimed *c, Outcome *out)
{
	MaHttpResponse resp;
	ListCell   *lc;

	memset(out, 0, sizeof(*out));
	if (c->refused)
	{
		out->state = "dead";
		out->error = c->refused;
		return;
	}

	if (c->ch.kind == MA_CHANNEL_SLACK_BOT && c->png != NULL && ma_channel_carries_images(&c->ch))
	{
		/* files.getUploadURLExternal, upload, files.completeUploadExternal */
		char	   *upload_url;
		char	   *file_id;
		char	   *reason;

		if (!post_one(&c->ch, linitial(c->requests), &resp, out))
			goto failed;
		upload_url = ma_json_string_field(resp.body, "upload_url");
		file_id = ma_json_string_field(resp.body, "file_id");
		if (upload_url == NULL || file_id == NULL)
		{
			out->error = pstrdup("slack answer without upload_url or file_id");
			out->retry = true;
			goto failed;
		}
		if (!ma_http_url_allowed(upload_url, &reason))
		{
			out->error = psprintf("slack upload %s", reason);
			out->retry = false;
			goto failed;
		}
		{
			MaChannel	upload_ch = c->ch;

			/* the upload URL answers plain text, not a Web API object */
			upload_ch.kind = MA_CHANNEL_WEBHOOK;
			if (!post_one(&upload_ch,
						  ma_slack_upload_request(&c->ch, &c->msg, upload_url, c->png, c->png_len),
						  &resp, out))
				goto failed;
		}
		if (!post_one(&c->ch, ma_slack_complete_request(&c->ch, &c->msg, file_id), &resp, out))
			goto failed;
	}
	else
	{
		int			n = list_length(c->requests);

		foreach(lc, c->requests)
		{
			int			step = foreach_current_index(lc);

			if (step < c->steps_done && step < n - 1)
				continue;		/* accepted by an earlier attempt */
			if (!post_one(&c->ch, (MaHttpRequest *) lfirst(lc), &resp, out))
				goto failed;
			if (step < n - 1)
				record_step(c, step + 1);
		}
	}
	out->state = "sent";
	out->error = NULL;
	return;

failed:
	out->state = (out->retry && c->attempts < ma_alert_max_attempts) ? "failed" : "dead";
	ereport(LOG,
			(errmsg("metric_anomaly: delivery %lld of alert %lld to channel \"%s\" failed on attempt %d (%s): %s",
					(long long) c->delivery_id, (long long) c->msg.alert_id, c->ch.name,
					c->attempts, out->state, out->error)));
}

/*
 * Records that the first `done` requests of a multi-request delivery were
 * accepted, in a short transaction of its own, so a retry skips them.
 */
static void
record_step(const Claimed *c, int done)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2];
	int			ret;

	begin_xact("recording a delivery step");
	values[0] = Int64GetDatum(c->delivery_id);
	values[1] = Int32GetDatum(done);
	ret = SPI_execute_with_args("UPDATE metric_anomaly.deliveries SET steps_done = $2 WHERE id = $1",
								2, types, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "recording a delivery step failed: %s", SPI_result_code_string(ret));
	end_xact();
	pgstat_report_activity(STATE_RUNNING, "sending an alert");
}

/* Records the outcome of an attempt; runs inside a transaction. */
static void
record_outcome(const Claimed *c, const Outcome *out)
{
	Oid			types[5] = {INT8OID, TEXTOID, INT4OID, TEXTOID, FLOAT8OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	char	   *err = clip_error(out->error);
	int			ret;

	values[0] = Int64GetDatum(c->delivery_id);
	values[1] = CStringGetTextDatum(out->state);
	values[2] = Int32GetDatum((int32) out->status);
	if (out->status == 0)
		nulls[2] = 'n';
	values[3] = err ? CStringGetTextDatum(err) : (Datum) 0;
	if (err == NULL)
		nulls[3] = 'n';
	values[4] = Float8GetDatum(backoff_ms(c->attempts));
	ret = SPI_execute_with_args("UPDATE metric_anomaly.deliveries"
								"   SET state = $2, http_status = $3, last_error = $4, in_flight = false,"
								"       next_attempt_at = CASE WHEN $2 = 'failed'"
								"         THEN pg_catalog.now() + $5 * interval '1 millisecond'"
								"         ELSE next_attempt_at END,"
								"       sent_at = CASE WHEN $2 = 'sent' THEN pg_catalog.now() END"
								" WHERE id = $1",
								5, types, values, nulls, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "recording a delivery failed: %s", SPI_result_code_string(ret));
}

/* Starts a short transaction with SPI connected and a snapshot. */
static void
begin_xact(const char *activity)
{
	int			ret;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* Commits the transaction begun by begin_xact(). */
static void
end_xact(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Becomes the delivery worker serving the database unless another one
 * does (then it waits, saying so once: worker.c), and releases deliveries
 * a predecessor left in flight.  False while another one serves.
 */
static bool claim_reported = false;

static bool
become_the_worker(void)
{
	int			ret;

	if (!ma_worker_claim(MA_LOCK_DELIVERY, &claim_reported))
		return false;
	have_lock = true;
	ret = SPI_execute("UPDATE metric_anomaly.deliveries"
					  "   SET in_flight = false, next_attempt_at = pg_catalog.now()"
					  " WHERE in_flight AND state IN ('pending', 'failed')",
					  false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "releasing interrupted deliveries failed");
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("metric_anomaly: %llu interrupted deliveries will be sent again",
						(unsigned long long) SPI_processed)));
	return true;
}

/*
 * One unit of work; returns the milliseconds to sleep before the next one
 * (0 after a delivery, to look for more at once).
 */
static long
delivery_step(MemoryContext keep)
{
	Claimed    *c = NULL;
	Outcome		out;

	begin_xact("claiming alert deliveries");
	/* Claimed before the extension exists, so start_worker() sees it. */
	if (!ma_worker_claim(MA_LOCK_DELIVERY, &claim_reported))
	{
		end_xact();
		return MISSING_POLL_MS;
	}
	if (!OidIsValid(get_extension_oid(MA_EXTENSION_NAME, true)))
	{
		if (!missing_logged)
			ereport(LOG,
					(errmsg("metric_anomaly: extension \"%s\" is not installed in database \"%s\", delivery waits for it",
							MA_EXTENSION_NAME, get_database_name(MyDatabaseId))));
		missing_logged = true;
		end_xact();
		return MISSING_POLL_MS;
	}
	missing_logged = false;
	if (!ma_extension_is_current())
	{
		end_xact();				/* said once in the log by extension.c */
		return MISSING_POLL_MS;
	}
	if (!have_lock && !become_the_worker())
	{
		end_xact();
		return MISSING_POLL_MS;
	}
	c = claim_one(keep);
	end_xact();
	if (c == NULL)
		return POLL_MS;

	pgstat_report_activity(STATE_RUNNING, "sending an alert");
	send_claimed(c, &out);
	/* Stepping aside leaves the row in flight: it is sent again, same key. */
	if (ma_worker_stepping_aside())
		ma_worker_step_aside_exit();

	begin_xact("recording an alert delivery");
	record_outcome(c, &out);
	end_xact();
	return 0;
}

/*
 * Runs one step; an error is reported and the transaction aborted, and the
 * worker goes on after a pause instead of exiting (a delivery claimed when
 * it happened is retried when its lease expires).
 */
static long
guarded_step(MemoryContext loop_ctx)
{
	volatile long sleep_ms = POLL_MS;

	ma_worker_set_busy(true);
	PG_TRY();
	{
		sleep_ms = delivery_step(loop_ctx);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(loop_ctx);
		if (ma_worker_stepping_aside())
		{
			FlushErrorState();
			ma_worker_step_aside_exit();
		}
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		sleep_ms = MISSING_POLL_MS;
	}
	PG_END_TRY();
	ma_worker_set_busy(false);
	return sleep_ms;
}

/* Entry point of the delivery worker; main_arg is the database OID. */
void
ma_delivery_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext loop_ctx;

	ma_worker_connect(dboid, MA_DELIVERY_BGW_TYPE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	loop_ctx = AllocSetContextCreate(TopMemoryContext, "metric_anomaly delivery",
									 ALLOCSET_DEFAULT_SIZES);
	ereport(DEBUG1, (errmsg("metric_anomaly: delivery worker started for database %u", dboid)));

	for (;;)
	{
		long		sleep_ms;

		if (ma_worker_stepping_aside())
			ma_worker_step_aside_exit();
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_ctx);
		sleep_ms = guarded_step(loop_ctx);
		if (sleep_ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 sleep_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}


/*
 * test_channel(name): sends a test message to the channel from this session
 * and returns the HTTP status of the last request (0 without an answer).
 */
Datum
metric_anomaly_test_channel(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MaChannel	ch;
	MaAlertMessage msg;
	HeapTuple	tup;
	TupleDesc	desc;
	MemoryContext keep = CurrentMemoryContext;
	char	   *kind;
	char	   *reason;
	List	   *reqs;
	ListCell   *lc;
	MaHttpResponse resp;
	int			ret;
	int64		now_ms = unix_ms();

	memset(&ch, 0, sizeof(ch));
	memset(&msg, 0, sizeof(msg));
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	values[0] = CStringGetTextDatum(name);
	ret = SPI_execute_with_args("SELECT c.kind, c.url, c.secret, c.options ->> 'channel',"
								"       pg_catalog.to_char(pg_catalog.now() AT TIME ZONE 'UTC',"
								"                          'YYYY-MM-DD\"T\"HH24:MI:00\"Z\"')"
								"  FROM metric_anomaly.alert_channels c WHERE c.name = $1",
								1, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "reading the channel failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("alert channel \"%s\" does not exist", name),
				 errhint("Create it in metric_anomaly.alert_channels.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	kind = getstr(tup, desc, 1, keep);
	ch.name = name;
	ch.url = getstr(tup, desc, 2, keep);
	ch.secret = getstr(tup, desc, 3, keep);
	ch.slack_channel = getstr(tup, desc, 4, keep);
	ch.chart = false;
	msg.minute = getstr(tup, desc, 5, keep);
	SPI_finish();

	if (!ma_channel_kind_from_name(kind, &ch.kind))
		elog(ERROR, "unknown channel kind \"%s\"", kind);
	if (!ma_http_url_allowed(ch.url, &reason))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("alert channel \"%s\" cannot be used: %s", name, reason),
				 errhint("Fix the channel url or metric_anomaly.webhook_allowed_hosts.")));

	msg.alert_id = 0;
	msg.metric = "metric_anomaly_test";
	msg.value = 0;
	msg.state = "firing";
	msg.source = "test";
	msg.episode_start = msg.minute;
	msg.summary = psprintf("Test message from metric_anomaly for channel %s", name);
	msg.idempotency_key = psprintf("ma-test-%s-" INT64_FORMAT, name, now_ms);
	msg.test = true;

	reqs = ma_channel_build(&ch, &msg, NULL, 0, now_ms);
	memset(&resp, 0, sizeof(resp));
	foreach(lc, reqs)
	{
		char	   *err;

		ma_http_post((MaHttpRequest *) lfirst(lc), &resp);
		CHECK_FOR_INTERRUPTS();
		if (resp.error)
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("test message to alert channel \"%s\" failed: %s", name, resp.error)));
			break;
		}
		if (!ma_channel_response_ok(&ch, &resp, &err))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("alert channel \"%s\" refused the test message: %s", name, err)));
			break;
		}
	}
	PG_RETURN_INT32((int32) resp.status);
}
