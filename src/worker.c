/*
 * worker.c
 *		The launcher, the per-database aggregation worker, and what every
 *		worker of the extension shares.
 *
 * The launcher is a static background worker (registered when the library
 * is preloaded) that connects to no database.  It waits until the database
 * named by metric_anomaly.database exists, then starts the aggregation
 * worker and the alert delivery worker there as dynamic workers, and starts
 * them again when they exit.  So a database that does not exist yet, or is
 * dropped or renamed, is waited for instead of making the postmaster
 * restart a worker that fails to connect.  It starts only after recovery,
 * so a standby does nothing until it is promoted.
 *
 * Every worker (aggregation and delivery, started by the launcher or by
 * start_worker()) connects through ma_worker_connect().  It then holds the
 * extension's locks (worker.h) for its whole life:
 *	- MA_LOCK_ALIVE, shared, so that a database command can find and stop
 *	  the workers connected to its database (step_aside.c);
 *	- MA_LOCK_AGGREGATION or MA_LOCK_DELIVERY, exclusive, once it serves
 *	  the database: a second worker of the same kind (preload and
 *	  start_worker() together) waits, saying so once, and never runs beside
 *	  the first.  pg_locks shows these locks to every role, so
 *	  start_worker() and worker_status see the same workers whoever asks.
 * A worker told to step aside (SIGUSR2 from step_aside.c) leaves quietly
 * with exit code 0 at the next safe point; work under way is cancelled and
 * its transaction rolled back, so nothing is lost or counted twice.
 *
 * The aggregation worker runs a pass (pass.c) at every multiple of
 * metric_anomaly.interval on the wall clock, and again at once while a
 * backlog remains.  It waits, saying so once, while the extension is not
 * installed in its database or another worker already serves it.
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
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
#include "storage/lock.h"
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
/* A worker that exits is started again no sooner than this. */
#define RELAUNCH_DELAY_MS	5000
/* The launcher looks at pg_database this often while serving it ... */
#define LAUNCHER_NAP_MS		10000
/* ... and this often while the database is missing: one heap scan of a
 * catalog of a few rows, so a recreated or renamed-back database is served
 * again within a second. */
#define MISSING_NAP_MS		1000
/* start_worker() looks this often whether its worker serves yet. */
#define START_POLL_MS		10
/* bgw_extra of a worker the launcher starts for metric_anomaly.database. */
#define LAUNCHED_MARK		"launcher"

typedef struct ManagedWorker
{
	const char *function;
	const char *type;
	BackgroundWorkerHandle *handle;
	TimestampTz last_start;
} ManagedWorker;

/* Set by SIGUSR2: a database command wants this worker gone. */
static volatile sig_atomic_t step_aside_pending = false;
/* True while the worker does work a step-aside may cancel. */
static volatile sig_atomic_t worker_busy = false;
/* What this worker is and where it runs, for its messages. */
static const char *worker_type = NULL;
static char worker_database[NAMEDATALEN];

/* Milliseconds from start to stop, rounded up, 0 when stop is not later. */
static long
ms_between(TimestampTz start, TimestampTz stop)
{
	if (stop <= start)
		return 0;
	return (long) ((stop - start + 999) / 1000);
}

/* The tag of one of the extension's own locks in database dboid. */
void
ma_lock_tag(LOCKTAG *tag, Oid dboid, MaLockKind kind)
{
	SET_LOCKTAG_ADVISORY(*tag, dboid, MA_LOCK_SPACE, (uint32) kind, MA_LOCK_SPACE);
}

/*
 * True when no database command holds the pause lock of dboid.  With wait,
 * waits until none does (the command's commit releases it) and returns
 * false if it had to wait.
 */
static bool
database_free(Oid dboid, bool wait)
{
	LOCKTAG		tag;

	ma_lock_tag(&tag, dboid, MA_LOCK_PAUSE);
	if (LockAcquire(&tag, ShareLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
	{
		LockRelease(&tag, ShareLock, true);
		return true;
	}
	if (wait)
	{
		(void) LockAcquire(&tag, ShareLock, true, false);
		LockRelease(&tag, ShareLock, true);
	}
	return false;
}

/* Fills in a dynamic worker that runs function in database dboid. */
static void
worker_definition(BackgroundWorker *w, const char *function, const char *type,
				  Oid dboid, bool launched)
{
	memset(w, 0, sizeof(*w));
	w->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w->bgw_start_time = BgWorkerStart_RecoveryFinished;
	w->bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w->bgw_library_name, BGW_MAXLEN, "%s", MA_LIBRARY_NAME);
	snprintf(w->bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(w->bgw_name, BGW_MAXLEN, "%s for database %u", type, dboid);
	snprintf(w->bgw_type, BGW_MAXLEN, "%s", type);
	if (launched)
		snprintf(w->bgw_extra, BGW_EXTRALEN, "%s", LAUNCHED_MARK);
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

/* True while the managed worker has been started and has not stopped. */
static bool
worker_running(ManagedWorker *mw)
{
	pid_t		pid;

	return mw->handle != NULL &&
		GetBackgroundWorkerPid(mw->handle, &pid) != BGWH_STOPPED;
}

/*
 * Starts the managed worker in dboid unless it is running or was started
 * less than RELAUNCH_DELAY_MS ago; sets *started when it starts it.
 * Returns the ms until it may be tried again (0 when nothing is due).
 */
static long
ensure_worker(ManagedWorker *mw, Oid dboid, bool *started)
{
	BackgroundWorker w;
	TimestampTz now = GetCurrentTimestamp();
	long		wait_ms;

	if (worker_running(mw))
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
	worker_definition(&w, mw->function, mw->type, dboid, true);
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
	*started = true;
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

/*
 * Main of the launcher.
 *
 * It says once that the database is missing, before it has served it;
 * after that a database that goes away was dropped or renamed by a command
 * that has already logged that the workers step aside (step_aside.c), and
 * the launcher waits for the name again without a word.  It says
 * "starting workers" whenever it starts them with none running: at first,
 * and when they come back.  While a database command holds the pause lock
 * of the database it waits for the command to end and then starts the
 * workers at once, without RELAUNCH_DELAY_MS (they left on request, they
 * did not fail).
 */
void
ma_launcher_main(Datum main_arg)
{
	ManagedWorker workers[] = {
		{"ma_worker_main", WORKER_TYPE, NULL, 0},
		{"ma_delivery_main", MA_DELIVERY_BGW_TYPE, NULL, 0},
	};
	bool		reported_missing = false;
	bool		served = false;
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
		bool		any_running = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		for (int i = 0; i < (int) lengthof(workers); i++)
			any_running |= worker_running(&workers[i]);

		dboid = lookup_database();
		if (OidIsValid(dboid) && !database_free(dboid, true))
		{
			/* A command was under way: look again, and start at once. */
			for (int i = 0; i < (int) lengthof(workers); i++)
				workers[i].last_start = 0;
			continue;
		}
		if (OidIsValid(current_db) && dboid != current_db && any_running)
		{
			/* The name now means another database (or none). */
			for (int i = 0; i < (int) lengthof(workers); i++)
				if (worker_running(&workers[i]))
					TerminateBackgroundWorker(workers[i].handle);
		}
		else if (!OidIsValid(dboid))
		{
			if (!reported_missing && !served)
				ereport(LOG,
						(errmsg("metric_anomaly: database \"%s\" does not exist; waiting for it",
								ma_database),
						 errhint("Create the database and the extension in it, or set metric_anomaly.database.")));
			reported_missing = true;
			nap = MISSING_NAP_MS;
		}
		else
		{
			bool		started = false;

			/* A database that came (back) is served at once. */
			if (reported_missing || dboid != current_db)
				for (int i = 0; i < (int) lengthof(workers); i++)
					workers[i].last_start = 0;
			reported_missing = false;
			served = true;
			current_db = dboid;
			for (int i = 0; i < (int) lengthof(workers); i++)
			{
				long		retry = ensure_worker(&workers[i], dboid, &started);

				if (retry > 0)
					nap = Min(nap, retry);
			}
			if (started && !any_running)
				ereport(LOG,
						(errmsg("metric_anomaly: starting workers in database \"%s\"",
								ma_database)));
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * SIGUSR2: a database command asks the worker to step aside.  Work under
 * way is cancelled like a query (the worker catches the error and leaves);
 * a waiting worker is woken.
 */
static void
handle_step_aside(SIGNAL_ARGS)
{
	int			save_errno = errno;

	step_aside_pending = true;
	if (worker_busy)
	{
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * The top of every worker's loop: leaves if a database command asked it to
 * step aside, serves interrupts, and rereads the configuration after a
 * SIGHUP.  Returns true when it reread it.
 */
bool
ma_worker_loop_top(void)
{
	if (step_aside_pending)
		ma_worker_step_aside_exit();
	CHECK_FOR_INTERRUPTS();
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return true;
}

/*
 * For a worker's error handling: the error a step-aside raised (its
 * cancel) ends the worker quietly instead of being reported.
 */
void
ma_worker_leave_if_stepping_aside(void)
{
	if (!step_aside_pending)
		return;
	FlushErrorState();
	ma_worker_step_aside_exit();
}

/*
 * Marks the stretches of work a step-aside may cancel.  Leaving one with
 * a step-aside pending leaves the worker, so that a cancel set just before
 * never fires outside the worker's error handling.
 */
void
ma_worker_set_busy(bool busy)
{
	worker_busy = busy;
	if (!busy && step_aside_pending)
		ma_worker_step_aside_exit();
}

/*
 * Leaves quietly (exit code 0: the postmaster neither logs nor restarts
 * it): the command that asked has logged why.  Rolls back whatever
 * transaction is open.
 */
void
ma_worker_step_aside_exit(void)
{
	worker_busy = false;
	QueryCancelPending = false;
	AbortOutOfAnyTransaction();
	ereport(DEBUG1,
			(errmsg("metric_anomaly: %s steps aside in database \"%s\"",
					worker_type ? worker_type : "worker", worker_database)));
	proc_exit(0);
}

/*
 * Sets up signals, connects to dboid and takes the worker's alive lock,
 * then leaves at once if a database command holds the database (it started
 * in the moment before the command) or, for a worker the launcher started,
 * if the database no longer has the configured name (it was renamed while
 * the worker started).  The alive lock comes before the pause check: a
 * command takes the pause lock before it looks for alive workers, so each
 * sees the other.
 */
void
ma_worker_connect(Oid dboid, const char *type)
{
	LOCKTAG		tag;
	char	   *name;
	bool		launched = strcmp(MyBgworkerEntry->bgw_extra, LAUNCHED_MARK) == 0;

	worker_type = type;
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	pqsignal(SIGUSR2, handle_step_aside);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname(type);

	ma_lock_tag(&tag, dboid, MA_LOCK_ALIVE);
	if (LockAcquire(&tag, ShareLock, true, true) == LOCKACQUIRE_NOT_AVAIL ||
		!database_free(dboid, false))
		ma_worker_step_aside_exit();

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	name = get_database_name(dboid);
	if (name != NULL)
		strlcpy(worker_database, name, sizeof(worker_database));
	CommitTransactionCommand();
	if (name == NULL || (launched && strcmp(worker_database, ma_database) != 0))
		ma_worker_step_aside_exit();
}

/*
 * Takes the lock that makes this worker the one of its kind serving the
 * database, unless another holds it; says once that it waits.  Once taken
 * it is held until the worker exits.
 */
bool
ma_worker_claim(MaLockKind kind, bool *reported)
{
	static bool held[MA_LOCK_START + 1];
	LOCKTAG		tag;

	if (held[kind])
		return true;
	ma_lock_tag(&tag, MyDatabaseId, kind);
	held[kind] = LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
	if (!held[kind] && !*reported)
		ereport(LOG,
				(errmsg("metric_anomaly: another %s serves database \"%s\"; waiting until it stops",
						worker_type, worker_database)));
	*reported = !held[kind];
	return held[kind];
}

/*
 * Checks that this worker serves the database and that the extension
 * exists; says once why not.
 */
static bool
worker_ready(bool *reported_other, bool *reported_missing)
{
	bool		extension;
	bool		current;

	if (!ma_worker_claim(MA_LOCK_AGGREGATION, reported_other))
		return false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	extension = OidIsValid(get_extension_oid(MA_EXTENSION_NAME, true));
	/* A database holding another version is said once by extension.c. */
	current = extension && ma_extension_is_current();
	CommitTransactionCommand();
	if (!extension && !*reported_missing)
		ereport(LOG,
				(errmsg("metric_anomaly: extension \"%s\" is not installed in database \"%s\"; waiting for it",
						MA_EXTENSION_NAME, worker_database),
				 errhint("Run CREATE EXTENSION metric_anomaly in that database.")));
	*reported_missing = !extension;
	return current;
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
 * worker_state, and the worker carries on.  A step-aside cancels the pass
 * instead: its open batch rolls back (events stay unprocessed for the next
 * worker) and the worker leaves.  Returns true when a backlog is left for
 * an immediate next pass.
 */
static bool
run_pass_safely(MemoryContext loop_cxt)
{
	MaPassResult result = {0};

	pgstat_report_activity(STATE_RUNNING, "metric_anomaly aggregation pass");
	ma_worker_set_busy(true);
	PG_TRY();
	{
		result = ma_run_pass(GetCurrentTimestamp(), true,
							 ma_interval_s * 1000);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(loop_cxt);
		ma_worker_leave_if_stepping_aside();
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
	ma_worker_set_busy(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return result.more;
}

/* Main of the aggregation worker; main_arg is the database OID. */
void
ma_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext loop_cxt;
	bool		reported_other = false;
	bool		reported_missing = false;
	int			interval_s;
	TimestampTz next;

	ma_worker_connect(dboid, WORKER_TYPE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "metric_anomaly worker loop",
									 ALLOCSET_DEFAULT_SIZES);

	/* The first pass runs at once: there may be a backlog from a crash. */
	interval_s = ma_interval_s;
	next = GetCurrentTimestamp();

	for (;;)
	{
		TimestampTz now;

		if (ma_worker_loop_top() && ma_interval_s != interval_s)
		{
			interval_s = ma_interval_s;
			next = next_boundary(GetCurrentTimestamp(), interval_s);
		}

		now = GetCurrentTimestamp();
		if (now >= next)
		{
			bool		more = false;

			MemoryContextSwitchTo(loop_cxt);
			if (worker_ready(&reported_other, &reported_missing))
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

/*
 * The pids of the sessions holding one of the extension's locks in dboid
 * (granted only), read from pg_locks, which shows every lock to every role.
 * Operators are schema-qualified: this runs under the caller's search_path.
 */
List *
ma_lock_holders(Oid dboid, MaLockKind kind)
{
	static MaStatement holders_stmt = {
		"SELECT l.pid FROM pg_catalog.pg_locks l"
		" WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory'"
		"   AND l.database OPERATOR(pg_catalog.=) $1"
		"   AND l.classid OPERATOR(pg_catalog.=) $2"
		"   AND l.objid OPERATOR(pg_catalog.=) $3"
		"   AND l.objsubid OPERATOR(pg_catalog.=) $4"
		"   AND l.granted AND l.pid IS NOT NULL",
		4, {OIDOID, OIDOID, OIDOID, INT2OID}
	};
	Datum		args[4];
	List	   *pids = NIL;
	uint64		n;

	args[0] = ObjectIdGetDatum(dboid);
	args[1] = ObjectIdGetDatum(MA_LOCK_SPACE);
	args[2] = ObjectIdGetDatum((Oid) kind);
	args[3] = Int16GetDatum(MA_LOCK_SPACE);
	ma_spi_connect();
	n = ma_execute(&holders_stmt, args, NULL, SPI_OK_SELECT, 0);
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		pids = lappend_int(pids,
						   DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1, &isnull)));
		MemoryContextSwitchTo(old);
	}
	ma_spi_finish();
	return pids;
}

/* The pid of the worker of this kind serving the current database, or 0. */
static pid_t
serving_worker(MaLockKind kind)
{
	List	   *pids = ma_lock_holders(MyDatabaseId, kind);

	return pids == NIL ? 0 : (pid_t) linitial_int(pids);
}

/*
 * Starts a worker of this type for the current database as a dynamic
 * background worker, unless one serves it; returns the pid of the one that
 * serves it.  *started says whether this call started it.
 *
 * It returns only once the worker serves the database (holds the lock of
 * its kind), so the caller sees it in worker_status at once.  Calls are
 * serialised by a transaction lock, so two at once start one worker, and
 * the check reads pg_locks, which every role sees whole: an admin who is
 * not a superuser cannot see the workers in pg_stat_activity.
 */
static pid_t
start_in_this_database(const char *function, const char *type,
					   MaLockKind kind, bool *started)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	LOCKTAG		tag;
	pid_t		pid;

	ma_lock_tag(&tag, MyDatabaseId, MA_LOCK_START);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);

	*started = false;
	pid = serving_worker(kind);
	if (pid != 0)
		return pid;

	worker_definition(&w, function, type, MyDatabaseId, false);
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
	for (;;)
	{
		pid_t		wpid;

		pid = serving_worker(kind);
		if (pid != 0)
			break;
		if (GetBackgroundWorkerPid(handle, &wpid) == BGWH_STOPPED &&
			(pid = serving_worker(kind)) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("the %s exited as it started", type),
					 errdetail("A database command on this database may have asked it to step aside."),
					 errhint("See the server log, and call the function again.")));
		if (pid != 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 START_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	*started = true;
	return pid;
}

/*
 * start_worker() returns integer
 *
 * Starts the aggregation worker and the alert delivery worker for the
 * current database as dynamic background workers (for servers that cannot
 * preload the library) and returns the aggregation worker's pid once both
 * serve the database; a worker that already serves it is left alone, so
 * calling it again changes nothing.
 */
Datum
metric_anomaly_start_worker(PG_FUNCTION_ARGS)
{
	bool		started;
	pid_t		pid = start_in_this_database("ma_worker_main", WORKER_TYPE,
											 MA_LOCK_AGGREGATION, &started);

	if (!started)
		ereport(NOTICE,
				(errmsg("the metric_anomaly worker of this database is already running")));
	(void) start_in_this_database("ma_delivery_main", MA_DELIVERY_BGW_TYPE,
								  MA_LOCK_DELIVERY, &started);
	PG_RETURN_INT32(pid);
}

/*
 * start_delivery_worker() returns integer
 *
 * Starts the alert delivery worker alone for the current database, or
 * returns the pid of the one already serving it.
 */
Datum
metric_anomaly_start_delivery_worker(PG_FUNCTION_ARGS)
{
	bool		started;

	PG_RETURN_INT32(start_in_this_database("ma_delivery_main",
										   MA_DELIVERY_BGW_TYPE,
										   MA_LOCK_DELIVERY, &started));
}
