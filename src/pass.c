/*
 * pass.c
 *		One aggregation pass, shared by the worker and process_pending().
 *
 * A pass folds one round of committed events in batches (aggregate.c: no
 * event row is written), then zero-fills every series up to the last closed
 * minute, evaluates the new and changed minutes, and purges folded events
 * and finished alerts past their retention.  The
 * worker runs each step in a transaction of its own (so a crash loses at most the step under way,
 * which rolls back whole); process_pending() runs them all in the caller's
 * transaction.  Steps of concurrent passes in one database serialise on a
 * transaction-level advisory lock.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "aggregate.h"
#include "alert.h"
#include "extension.h"
#include "detect_cache_sql.h"
#include "evaluate.h"
#include "fold.h"
#include "metric_anomaly.h"
#include "pass.h"
#include "report.h"
#include "spi_util.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(metric_anomaly_process_pending);

/* "ma_pass" */
#define PASS_LOCK_KEY	INT64CONST(0x6d615f7061737300)

static MaStatement pass_stmt = {
	"UPDATE metric_anomaly.worker_state"
	"   SET last_pass_start = $1, last_pass_end = clock_timestamp(),"
	"       last_pass_events = $2, passes = passes + 1",
	2, {TIMESTAMPTZOID, INT8OID}
};

static MaStatement error_stmt = {
	"UPDATE metric_anomaly.worker_state"
	"   SET last_error = $1, last_error_at = clock_timestamp()",
	1, {TEXTOID}
};

typedef struct PassState
{
	TimestampTz start;
	TimestampTz last_closed;
	TimestampTz purge_before;	/* 0: keep events */
	TimestampTz alert_purge_before; /* 0: keep alerts */
	int			batch_size;
	bool		round_done;		/* the round of this pass has ended */
	int64		events;
} PassState;

typedef int64 (*StepFn) (PassState *state);

static void
lock_pass(void)
{
	DirectFunctionCall1(pg_advisory_xact_lock_int8, Int64GetDatum(PASS_LOCK_KEY));
}

/*
 * Turns JIT compilation off for the pass's statements, until the end of
 * the transaction (GUC_ACTION_LOCAL) or of the nest level the caller made
 * (GUC_ACTION_SAVE).  Their plans are estimated high (unnest and
 * generate_series over arrays of unknown length) and were compiled at
 * every pass for nothing: zero-fill's statement took 15 ms, 12 of them
 * emitting code for a scan that found no series behind; a cold pass spent
 * 93 ms in JIT.
 */
static void
pass_settings(GucAction action)
{
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 action, true, 0, false);
}

/*
 * The worker's step transactions commit without waiting for their WAL to
 * reach disk (synchronous_commit = off, for the transaction only).  What a
 * pass writes is derived from committed events, together with the position
 * it has folded to, so a crash that loses the last commits loses whole
 * steps (WAL is replayed in order: no later commit survives an earlier
 * one lost), and the next pass folds those events again: exactly once
 * still.  Nothing leaves the database from a pass: the delivery worker
 * sends an alert only after its claim has committed, and that commit
 * flushes the WAL before it, the pass's commit included (it keeps
 * synchronous_commit at least local: delivery.c).  A steady pass of
 * 10,000 series writes about 18 MB of WAL, and waiting for its flush took
 * 2 to 9 ms in most passes but 86 ms to 1.2 s in a few of 27 on this
 * machine's virtual disk (test/bench/detect.sh): the pass no longer waits
 * on it.
 * process_pending() leaves the caller's setting alone: it runs in the
 * caller's transaction.
 */
static void
worker_commit_settings(void)
{
	(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * Runs one step, in a transaction of its own when asked to (the worker),
 * else inside the caller's (SPI already connected, lock already held).
 */
static int64
run_step(StepFn fn, PassState *state, bool own_transaction)
{
	int64		result;

	if (!own_transaction)
		return fn(state);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pass_settings(GUC_ACTION_LOCAL);
	worker_commit_settings();
	ma_spi_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	lock_pass();
	result = fn(state);
	ma_spi_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return result;
}

/*
 * Folds one batch of the round (counting it in worker_state); -1 once the
 * round has ended.
 */
static int64
step_aggregate(PassState *state)
{
	int64		n;

	if (state->round_done)
		return -1;
	n = ma_aggregate_batch(state->batch_size,
						   state->last_closed + USECS_PER_MINUTE,
						   &state->round_done);
	/* Tests: metric_anomaly.debug_hold_round (step_aside.c). */
	if (state->events > 0 && !state->round_done)
		ma_debug_hold_round();
	return n;
}

/* Zero-fills, evaluates, and records the pass. */
static int64
step_finish(PassState *state)
{
	Datum		args[2];

	ma_zero_fill(state->last_closed);
	ma_evaluate_pending(state->last_closed);

	args[0] = TimestampTzGetDatum(state->start);
	args[1] = Int64GetDatum(state->events);
	ma_execute(&pass_stmt, args, NULL, SPI_OK_UPDATE, 0);
	return 0;
}

/* Runs the scheduled reports that are due (report.c). */
static int64
step_reports(PassState *state)
{
	return ma_run_due_reports();
}

static int64
step_purge(PassState *state)
{
	return ma_purge_events(state->purge_before, state->batch_size);
}

static int64
step_purge_alerts(PassState *state)
{
	return ma_purge_alerts(state->alert_purge_before, state->batch_size);
}

/* Repeats a purge step while it deletes whole batches. */
static void
run_batches(StepFn fn, PassState *state, bool own_transactions)
{
	int64		n;

	do
	{
		CHECK_FOR_INTERRUPTS();
		n = run_step(fn, state, own_transactions);
	} while (n == state->batch_size);
}

/* What is older than this is past a retention of seconds; 0 keeps all. */
static TimestampTz
retention_cutoff(TimestampTz as_of, int seconds)
{
	return seconds > 0 ? as_of - (TimestampTz) seconds * USECS_PER_SEC : 0;
}

/*
 * Runs one pass as of as_of: minutes that ended at or before as_of are
 * closed.  With a time budget (ms, 0 for none) the batch loop stops once
 * the budget is spent and reports that events remain.
 */
MaPassResult
ma_run_pass(TimestampTz as_of, bool own_transactions, int time_budget_ms)
{
	PassState	state;
	MaPassResult result = {0};
	int64		n;
	int			nest = 0;

	state.start = GetCurrentTimestamp();
	state.last_closed = ma_minute_floor(as_of) - USECS_PER_MINUTE;
	state.batch_size = ma_batch_size;
	state.events = 0;
	state.purge_before = retention_cutoff(as_of, ma_event_retention_s);
	state.alert_purge_before = retention_cutoff(as_of, ma_alert_retention_s);

	state.round_done = false;
	if (!own_transactions)
	{
		/* the caller's settings come back when the pass ends */
		nest = NewGUCNestLevel();
		pass_settings(GUC_ACTION_SAVE);
	}
	/* the pass's writes to aggregated_metrics are detection's cache's own */
	ma_detect_cache_pass_begin();
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		n = run_step(step_aggregate, &state, own_transactions);
		if (n < 0)
			break;
		state.events += n;
		if (time_budget_ms > 0 &&
			TimestampDifferenceExceeds(state.start, GetCurrentTimestamp(),
									   time_budget_ms))
		{
			result.more = true;
			break;
		}
	}

	CHECK_FOR_INTERRUPTS();
	run_step(step_finish, &state, own_transactions);
	run_step(step_reports, &state, own_transactions);

	if (state.purge_before != 0)
		run_batches(step_purge, &state, own_transactions);
	if (state.alert_purge_before != 0)
		run_batches(step_purge_alerts, &state, own_transactions);

	ma_detect_cache_pass_end();
	if (!own_transactions)
		AtEOXact_GUC(true, nest);
	result.events = state.events;
	return result;
}

/*
 * Records the message of a failed pass in worker_state, in a transaction of
 * its own; a failure to record is only logged.
 */
void
ma_record_error(const char *message)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		Datum		arg = CStringGetTextDatum(message);

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		ma_spi_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		ma_execute(&error_stmt, &arg, NULL, SPI_OK_UPDATE, 0);
		ma_spi_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
}

/*
 * process_pending(as_of timestamptz DEFAULT now()) returns bigint
 *
 * Runs one full pass in the calling session and transaction; returns the
 * number of events folded.
 */
Datum
metric_anomaly_process_pending(PG_FUNCTION_ARGS)
{
	TimestampTz as_of = PG_GETARG_TIMESTAMPTZ(0);
	MaPassResult result;

	if (TIMESTAMP_NOT_FINITE(as_of))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of must be a finite timestamp")));
	if (!ma_fold_in_range(as_of))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("as_of is outside the range metric_anomaly can compute with"),
				 errdetail("Passes run as of a time at least 30 days from either end of the timestamp range.")));

	ma_extension_require_current();
	ma_spi_connect();
	lock_pass();
	result = ma_run_pass(as_of, false, 0);
	ma_spi_finish();

	PG_RETURN_INT64(result.events);
}
