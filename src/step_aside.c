/*
 * step_aside.c
 *		The utility hook that makes the extension's workers give way to the
 *		database commands that need a database free of other sessions.
 *
 * DROP DATABASE, ALTER DATABASE ... RENAME TO, ALTER DATABASE ... SET
 * TABLESPACE and CREATE DATABASE ... TEMPLATE fail with "database is being
 * accessed by other users" while any session is connected to the database
 * (they wait 5 s for sessions to go: CountOtherDBBackends).  PostgreSQL
 * terminates autovacuum workers there; this hook does the same for ours,
 * before the command runs:
 *	1. it takes the pause lock of the database for the rest of the
 *	   transaction, so that neither the launcher nor a worker that is just
 *	   connecting comes (back) while the command runs (worker.c);
 *	2. if any worker holds the database's alive lock, it logs one line,
 *	   sends those workers SIGUSR2 (they roll back what they do and leave
 *	   with exit code 0) and waits until the alive lock is free, sending
 *	   the signal again each second, for at most STEP_ASIDE_TIMEOUT_MS;
 *	3. the command runs; its commit releases the pause lock and the
 *	   launcher starts the workers again if a database of the configured
 *	   name exists (after a rename, only once it has that name again).
 * A worker that holds a connection while it only waits (for the extension,
 * or for another worker of its kind) steps aside the same way.
 *
 * The hook is in every backend when the library is preloaded.  Without
 * preloading, a backend that has not loaded the library does not have it,
 * and workers started by start_worker() are in the way (README).
 *
 * metric_anomaly.debug_hold_round, for tests only, stops the aggregation
 * worker in the middle of a round until a command makes it step aside, so
 * that a test meets a busy worker every time instead of hoping to catch
 * one (ma_debug_hold_round()).
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "metric_anomaly.h"
#include "pg_compat.h"
#include "worker.h"

/* How long a command waits for the workers to go before it runs anyway. */
#define STEP_ASIDE_TIMEOUT_MS	60000
/* How often it looks whether they have gone, and signals them again. */
#define STEP_ASIDE_POLL_MS		10
#define STEP_ASIDE_RESIGNAL_MS	1000

/* What a held worker shows as its query in pg_stat_activity. */
#define HOLD_ACTIVITY \
	"metric_anomaly aggregation pass: held mid-round (metric_anomaly.debug_hold_round)"

static ProcessUtility_hook_type prev_utility_hook = NULL;

/* metric_anomaly.debug_hold_round (see ma_step_aside_install()). */
static bool hold_round = false;

/*
 * The database a statement needs free of other sessions, or NULL; *verb
 * names the command for the log.  CREATE DATABASE copies template1 unless
 * told otherwise.
 */
static const char *
database_needed_free(Node *stmt, const char **verb)
{
	ListCell   *lc;

	switch (nodeTag(stmt))
	{
		case T_DropdbStmt:
			*verb = "DROP DATABASE";
			return ((DropdbStmt *) stmt)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType != OBJECT_DATABASE)
				return NULL;
			*verb = "ALTER DATABASE RENAME";
			return ((RenameStmt *) stmt)->subname;
		case T_CreatedbStmt:
			*verb = "CREATE DATABASE";
			foreach(lc, ((CreatedbStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
					return defGetString(opt);
			}
			return "template1";
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst_node(DefElem, lc);

				if (strcmp(opt->defname, "tablespace") == 0)
				{
					*verb = "ALTER DATABASE SET TABLESPACE";
					return ((AlterDatabaseStmt *) stmt)->dbname;
				}
			}
			return NULL;
		default:
			return NULL;
	}
}

/* True when no worker holds the alive lock of dboid. */
static bool
workers_gone(Oid dboid)
{
	LOCKTAG		tag;

	ma_lock_tag(&tag, dboid, MA_LOCK_ALIVE);
	if (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		return false;
	LockRelease(&tag, ExclusiveLock, false);
	return true;
}

/* Sends SIGUSR2 to every worker holding the alive lock of dboid. */
static void
signal_workers(Oid dboid)
{
	ListCell   *lc;

	foreach(lc, ma_lock_holders(dboid, MA_LOCK_ALIVE))
	{
		pid_t		pid = (pid_t) lfirst_int(lc);

		if (pid != MyProcPid)
			(void) kill(pid, SIGUSR2);
	}
}

/*
 * Makes the workers connected to the database named dbname leave, and
 * keeps them away until the transaction ends.
 */
static void
step_aside(const char *dbname, const char *verb)
{
	Oid			dboid = get_database_oid(dbname, true);
	LOCKTAG		pause;
	TimestampTz start;
	TimestampTz signalled;

	if (!OidIsValid(dboid))
		return;
	ma_lock_tag(&pause, dboid, MA_LOCK_PAUSE);
	(void) LockAcquire(&pause, ExclusiveLock, false, false);
	if (workers_gone(dboid))
		return;

	if (ma_database != NULL && strcmp(dbname, ma_database) == 0)
		ereport(LOG,
				(errmsg("metric_anomaly: the workers of database \"%s\" step aside for %s",
						dbname, verb),
				 errdetail("They come back when the command has ended and a database named \"%s\" exists.",
						   ma_database)));
	else
		ereport(LOG,
				(errmsg("metric_anomaly: the workers of database \"%s\" step aside for %s",
						dbname, verb),
				 errdetail("Workers started by start_worker() do not come back by themselves.")));
	start = signalled = GetCurrentTimestamp();
	signal_workers(dboid);
	while (!workers_gone(dboid))
	{
		TimestampTz now = GetCurrentTimestamp();

		if (TimestampDifferenceExceeds(start, now, STEP_ASIDE_TIMEOUT_MS))
		{
			ereport(WARNING,
					(errmsg("metric_anomaly workers of database \"%s\" did not step aside within %d s",
							dbname, STEP_ASIDE_TIMEOUT_MS / 1000),
					 errhint("See the server log for what they are doing.")));
			return;
		}
		if (TimestampDifferenceExceeds(signalled, now, STEP_ASIDE_RESIGNAL_MS))
		{
			signal_workers(dboid);
			signalled = now;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 STEP_ASIDE_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* The hook: steps the workers aside, then runs the statement. */
static void
ma_utility_hook(MA_UTILITY_HOOK_ARGS)
{
	const char *verb = NULL;
	const char *dbname = database_needed_free(pstmt->utilityStmt, &verb);

	/* A command that refuses to run in a transaction block just fails. */
	if (dbname != NULL &&
		(IsA(pstmt->utilityStmt, RenameStmt) || !IsTransactionBlock()))
		step_aside(dbname, verb);
	if (prev_utility_hook)
		MA_UTILITY_HOOK_CALL(prev_utility_hook);
	else
		MA_UTILITY_HOOK_CALL(standard_ProcessUtility);
}

/*
 * Called by the pass after it has folded a batch of a round that has more
 * events, the round's progress of an earlier batch already committed, and
 * before this batch commits.  While metric_anomaly.debug_hold_round is on,
 * the aggregation worker waits here, showing HOLD_ACTIVITY, until the
 * setting is turned off (a reload) or a step-aside ends the worker: the
 * batch then rolls back as any batch cut off does.  The backends that fold
 * by process_pending() never wait.
 *
 * It reloads the configuration (ma_worker_loop_top()) inside the batch's
 * transaction, as
 * autovacuum does in vacuum_delay_point() from PostgreSQL 16 on: a value
 * read here stays when the batch commits, and the worker leaves when it
 * does not.
 */
void
ma_debug_hold_round(void)
{
	if (!AmBackgroundWorkerProcess() || !hold_round)
		return;
	pgstat_report_activity(STATE_RUNNING, HOLD_ACTIVITY);
	for (;;)
	{
		(void) ma_worker_loop_top();
		if (!hold_round)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 STEP_ASIDE_RESIGNAL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	pgstat_report_activity(STATE_RUNNING, "metric_anomaly aggregation pass");
}

/*
 * Installs the hook and defines the test setting; called from _PG_init,
 * before the prefix is reserved.
 */
void
ma_step_aside_install(void)
{
	DefineCustomBoolVariable("metric_anomaly.debug_hold_round",
							 "Holds the aggregation worker in the middle of a round (tests only).",
							 "While on, the worker waits after folding a batch of a round that has more "
							 "events, before the batch commits, until the setting is turned off or a "
							 "database command makes it step aside.",
							 &hold_round,
							 false,
							 PGC_SIGHUP,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = ma_utility_hook;
}
