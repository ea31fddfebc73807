/*
 * worker.c
 *		The launcher and the per-database aggregation worker.
 *
 * The launcher is a static background worker (registered when the library
 * is preloaded) that connects to no database.  It waits until the database
 * named by metric_anomaly.database exists, then starts the aggregation
 * worker and the alert delivery worker there as dynamic workers, and starts
 * them again when they exit.  So a database that does not exist yet, or is
 * dropped (WITH (FORCE) terminates its workers), is reported once and
 * waited for, instead of making the postmaster restart a worker that fails
 * to connect.  It starts only after recovery, so a standby does nothing
 * until it is promoted.
 *
 * The aggregation worker runs a pass (pass.c) at every multiple of
 * metric_anomaly.interval on the wall clock, and again at once while a
 * backlog remains.  It waits, saying so once, while the extension is not
 * installed in its database or another worker already serves it.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "delivery.h"
#include "extension.h"
#include "metric_anomaly.h"
#include "pass.h"
#include "spi_util.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(metric_anomaly_start_worker);
PG_FUNCTION_INFO_V1(metric_anomaly_start_delivery_worker);

#define WORKER_TYPE			"metric_anomaly worker"
#define LAUNCHER_TYPE		"metric_anomaly launcher"
/* "ma_work" */
#define WORKER_LOCK_KEY		INT64CONST(0x6d615f776f726b00)
/* A worker that exits is started again no sooner than this. */
#define RELAUNCH_DELAY_MS	5000
#define LAUNCHER_NAP_MS		10000

typedef struct ManagedWorker
{
	const char *function;
	const char *type;
	BackgroundWorkerHandle *handle;
	TimestampTz last_start;
} ManagedWorker;

/* Milliseconds from start to stop, rounded up, 0 when stop is not later. */
static long
ms_between(TimestampTz start, TimestampTz stop)
{
	if (stop <= start)
		return 0;
	return (long) ((stop - start + 999) / 1000);
}

/* Fills in a dynamic worker that runs function in database dboid. */
static void
worker_definition(BackgroundWorker *w, const char *function, const char *type,
				  Oid dboid)
{
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	w->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w->bgw_library_name, BGW_MAXLEN, "%s", MA_LIBRARY_NAME);
	snprintf(w->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(w->bgw_name, BGW_MAXLEN, "%s for database %u", type, dboid);
	snprintf(w->bgw_type, BGW_MAXLEN, "%s", type);
	w->bgw_main_arg = ObjectIdGetDatum(dboid);
	w->bgw_notify_pid = MyProcPid;
}

/* Registers the launcher; called from _PG_init when preloaded. */
void
ma_register_launcher(void)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 5;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "%s", MA_LIBRARY_NAME);
	snprintf(w.bgw_function_name, BGW_MAXLEN, "ma_launcher_main");
	snprintf(w.bgw_name, BGW_MAXLEN, LAUNCHER_TYPE);
	snprintf(w.bgw_type, BGW_MAXLEN, LAUNCHER_TYPE);
	RegisterBackgroundWorker(&w);
}

/*
 * Starts the managed worker in dboid unless it is running or was started
 * less than RELAUNCH_DELAY_MS ago.  Returns the ms until it may be tried
 * again (0 when nothing is due).
 */
static long
ensure_worker(ManagedWorker *mw, Oid dboid)
{
	pid_t		pid;
	BackgroundWorker w;
	TimestampTz now = GetCurrentTimestamp();
	long		wait_ms;

	if (mw->handle != NULL &&
		GetBackgroundWorkerPid(mw->handle, &pid) != BGWH_STOPPED)
		return 0;

	wait_ms = RELAUNCH_DELAY_MS -
		ms_between(mw->last_start, now);
	if (mw->last_start != 0 && wait_ms > 0)
		return wait_ms;

	if (mw->handle != NULL)
	{
		pfree(mw->handle);
		mw->handle = NULL;
	}
	worker_definition(&w, mw->function, mw->type, dboid);
	mw->last_start = now;
	if (!RegisterDynamicBackgroundWorker(&w, &mw->handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("metric_anomaly could not start the %s", mw->type),
				 errhint("Raise max_worker_processes.")));
		mw->handle = NULL;
		return RELAUNCH_DELAY_MS;
	}
	return 0;
}

/*
 * Looks the configured database up; InvalidOid when it does not exist (or
 * is only half dropped).  Without a database of its own the launcher can
 * read pg_database only by a heap scan, as the autovacuum launcher does.
 */
static Oid
lookup_database(void)
{
	Oid			dboid = InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (strcmp(NameStr(db->datname), ma_database) != 0)
			continue;
#ifdef DATCONNLIMIT_INVALID_DB
		if (db->datconnlimit == DATCONNLIMIT_INVALID_DB)
			break;
#endif
		dboid = db->oid;
		break;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dboid;
}

/* Main of the launcher. */
void
ma_launcher_main(Datum main_arg)
{
	ManagedWorker workers[] = {
		{"ma_worker_main", WORKER_TYPE, NULL, 0},
		{"ma_delivery_main", MA_DELIVERY_BGW_TYPE, NULL, 0},
	};
	bool		reported_missing = false;
	Oid			current_db = InvalidOid;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(LAUNCHER_TYPE);

	for (;;)
	{
		Oid			dboid;
		long		nap = LAUNCHER_NAP_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		dboid = lookup_database();
		if (!OidIsValid(dboid))
		{
			if (!reported_missing)
				ereport(LOG,
						(errmsg("metric_anomaly: database \"%s\" does not exist; waiting for it",
								ma_database),
						 errhint("Create the database and the extension in it, or set metric_anomaly.database.")));
			reported_missing = true;
		}
		else
		{
			if (reported_missing || dboid != current_db)
				ereport(LOG,
						(errmsg("metric_anomaly: starting workers in database \"%s\"",
								ma_database)));
			reported_missing = false;
			current_db = dboid;
			for (int i = 0; i < (int) lengthof(workers); i++)
			{
				long		retry = ensure_worker(&workers[i], dboid);

				if (retry > 0)
					nap = Min(nap, retry);
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Checks that the extension exists and that this worker holds the
 * database's worker lock; says once why not.
 */
static bool
worker_ready(bool *reported)
{
	bool		ok = false;
	bool		extension;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	extension = OidIsValid(get_extension_oid(MA_EXTENSION_NAME, true));
	if (!extension)
	{
		if (!*reported)
			ereport(LOG,
					(errmsg("metric_anomaly: extension \"%s\" is not installed in database \"%s\"; waiting for it",
							MA_EXTENSION_NAME, get_database_name(MyDatabaseId)),
					 errhint("Run CREATE EXTENSION metric_anomaly in that database.")));
		*reported = true;
	}
	else if (!ma_extension_is_current())
		ok = false;				/* said once in the log by extension.c */
	else if (!DatumGetBool(DirectFunctionCall1(pg_try_advisory_lock_int8,
											   Int64GetDatum(WORKER_LOCK_KEY))))
	{
		if (!*reported)
			ereport(LOG,
					(errmsg("metric_anomaly: another worker serves database \"%s\"; waiting until it stops",
							get_database_name(MyDatabaseId))));
		*reported = true;
	}
	else
	{
		ok = true;
		*reported = false;
	}
	CommitTransactionCommand();
	return ok;
}

/* The next multiple of interval_s on the wall clock after now. */
static TimestampTz
next_boundary(TimestampTz now, int interval_s)
{
	int64		step = (int64) interval_s * USECS_PER_SEC;

	return (now / step + 1) * step;
}

/*
 * Runs one pass, catching its error: the error is logged and recorded in
 * worker_state, and the worker carries on.  Returns true when a backlog is
 * left for an immediate next pass.
 */
static bool
run_pass_safely(MemoryContext loop_cxt)
{
	MaPassResult result = {0};

	pgstat_report_activity(STATE_RUNNING, "metric_anomaly aggregation pass");
	PG_TRY();
	{
		result = ma_run_pass(GetCurrentTimestamp(), true,
							 ma_interval_s * 1000);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(loop_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errmsg("metric_anomaly: aggregation pass failed: %s", edata->message)));
		ma_record_error(edata->message);
		FreeErrorData(edata);
		result.more = false;
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
	return result.more;
}

/* Main of the aggregation worker; main_arg is the database OID. */
void
ma_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext loop_cxt;
	bool		reported = false;
	int			interval_s;
	TimestampTz next;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname(WORKER_TYPE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "metric_anomaly worker loop",
									 ALLOCSET_DEFAULT_SIZES);

	/* The first pass runs at once: there may be a backlog from a crash. */
	interval_s = ma_interval_s;
	next = GetCurrentTimestamp();

	for (;;)
	{
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (ma_interval_s != interval_s)
			{
				interval_s = ma_interval_s;
				next = next_boundary(GetCurrentTimestamp(), interval_s);
			}
		}

		now = GetCurrentTimestamp();
		if (now >= next)
		{
			bool		more = false;

			MemoryContextSwitchTo(loop_cxt);
			if (worker_ready(&reported))
				more = run_pass_safely(loop_cxt);
			MemoryContextReset(loop_cxt);
			now = GetCurrentTimestamp();
			next = more ? now : next_boundary(now, interval_s);
		}

		if (next > now)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ms_between(now, next),
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

/* The pid of the worker of this type serving this database, or 0. */
static pid_t
running_worker(const char *type)
{
	static MaStatement running_stmt = {
		"SELECT pid FROM pg_catalog.pg_stat_activity"
		" WHERE backend_type = $1 AND datid = $2 LIMIT 1",
		2, {TEXTOID, OIDOID}
	};
	Datum		args[2];
	pid_t		pid = 0;

	args[0] = CStringGetTextDatum(type);
	args[1] = ObjectIdGetDatum(MyDatabaseId);
	ma_spi_connect();
	if (ma_execute(&running_stmt, args, NULL, SPI_OK_SELECT, 1) > 0)
	{
		bool		isnull;

		pid = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	}
	ma_spi_finish();
	return pid;
}

/*
 * Starts a worker of this type for the current database as a dynamic
 * background worker, unless one runs; returns its pid.  *started says which.
 */
static pid_t
start_in_this_database(const char *function, const char *type, bool *started)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	pid_t		pid = running_worker(type);

	*started = false;
	if (pid != 0)
		return pid;

	worker_definition(&w, function, type, MyDatabaseId);
	if (!RegisterDynamicBackgroundWorker(&w, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not register the %s", type),
				 errhint("Raise max_worker_processes, or stop other background workers.")));
	if (WaitForBackgroundWorkerStartup(handle, &pid) != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the %s", type),
				 errhint("See the server log.")));
	*started = true;
	return pid;
}

/*
 * start_worker() returns integer
 *
 * Starts the aggregation worker and the alert delivery worker for the
 * current database as dynamic background workers (for servers that cannot
 * preload the library) and returns the aggregation worker's pid; a worker
 * that already runs is left alone.
 */
Datum
metric_anomaly_start_worker(PG_FUNCTION_ARGS)
{
	bool		started;
	pid_t		pid = start_in_this_database("ma_worker_main", WORKER_TYPE, &started);

	if (!started)
		ereport(NOTICE,
				(errmsg("the metric_anomaly worker of this database is already running")));
	(void) start_in_this_database("ma_delivery_main", MA_DELIVERY_BGW_TYPE, &started);
	PG_RETURN_INT32(pid);
}

/*
 * start_delivery_worker() returns integer
 *
 * Starts the alert delivery worker alone for the current database, or
 * returns the pid of the one already running.
 */
Datum
metric_anomaly_start_delivery_worker(PG_FUNCTION_ARGS)
{
	bool		started;

	PG_RETURN_INT32(start_in_this_database("ma_delivery_main",
										   MA_DELIVERY_BGW_TYPE, &started));
}
