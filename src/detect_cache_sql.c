/*
 * detect_cache_sql.c
 *		When detection may use the rows it holds from earlier passes
 *		(detect_cache.c): the generation counter in shared memory, the
 *		statement trigger on aggregated_metrics that bumps it, the
 *		transaction callbacks, and metric_anomaly.detect_cache_size.
 *
 * The rule.  Held rows must always equal what a fresh read would give, so
 * that verdicts are the same with the cache and without.  Rows of
 * aggregated_metrics change in two ways:
 *
 * - By the pipeline of this backend (fold, zero-fill, derived metrics,
 *   verdicts, all inside ma_run_pass()).  Every such change of a value
 *   marks the row needs_eval, so the next detection sees it among the dirty
 *   minutes, and a dirty minute at or before what a series holds makes that
 *   series read afresh (evaluate.c).
 * - By anything else: a user's INSERT, UPDATE, DELETE, TRUNCATE or COPY,
 *   process_pending() or a re-judging in another backend, this backend
 *   outside a pass.  Each such statement bumps the database's generation
 *   (a 64-bit counter in shared memory: each of the first MA_GEN_SLOTS
 *   databases to use one has its own, and any further ones share the
 *   last, so that they only flush each other more often), and its
 *   transaction bumps it again after it commits.
 *
 * This backend follows the counter as a chain: at each bump of its own
 * pipeline it checks that the counter stood where it last left it (the
 * atomic add returns the old value), so any bump in between, by another
 * backend or by this one outside a pass, breaks the chain; a broken chain,
 * or a counter that moved since, flushes the whole cache before the next
 * detection reads.
 *
 * The race with commits: detection reads the counter before its cursor
 * takes its snapshot (a read-committed snapshot taken at cursor open).  A
 * transaction's changes become visible (ProcArrayEndTransaction) before
 * its commit callback bumps.  So a change committed and bumped before the
 * read is seen by the flush it causes and the fresh read after it; one
 * whose commit bump comes after the read breaks the chain at this
 * backend's next bump or shows as a moved counter at its next read, so
 * the rows read without it are flushed before anything judges with them.
 * The bump at statement time is not needed for this (the commit bump
 * covers it) but costs nothing and sets the flag that asks for the commit
 * bump.  Under REPEATABLE READ or SERIALIZABLE the snapshot predates the
 * read: such a pass flushes and holds nothing.  A transaction that changed
 * aggregated_metrics cannot be prepared (a COMMIT PREPARED has no callback
 * to bump from).
 *
 * Aborts: a (sub)transaction that stored rows and rolls back flushes the
 * cache, since the rows it read may include its own rolled-back folds.
 * Without shared memory (the library not preloaded) the cache is off.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "detect_cache.h"
#include "detect_cache_sql.h"
#include "pg_compat.h"

PG_FUNCTION_INFO_V1(metric_anomaly_detect_cache_invalidate);
PG_FUNCTION_INFO_V1(metric_anomaly_detect_cache_stats);
PG_FUNCTION_INFO_V1(metric_anomaly_detect_cache_held);

/*
 * Counters of databases: slot i belongs to database db[i], taken by the
 * first backend of that database to need one (a database dropped keeps its
 * slot until the server restarts); once all are taken, databases without
 * one share gen[MA_GEN_SLOTS].  (A slot by OID modulo their number made
 * two databases whose OIDs were 64 apart flush each other's caches with
 * every write.)
 */
#define MA_GEN_SLOTS	64

typedef struct GenShared
{
	slock_t		mutex;			/* taking a slot */
	Oid			db[MA_GEN_SLOTS];
	pg_atomic_uint64 gen[MA_GEN_SLOTS + 1];
} GenShared;

int			ma_detect_cache_size_mb = 256;

static GenShared *shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static bool in_pipeline = false;
static int	pipeline_level = 0;
static bool chain_ok = false;
static uint64 chain = 0;
static bool xact_wrote = false;
static int	modified_level = 0;
static Oid	held_relid = InvalidOid;
static bool holding = false;	/* a detection pass uses the cache now */

/* counters of this backend, for detect_cache_stats() */
static int64 window_hits = 0;
static int64 season_hits = 0;
static int64 flushes = 0;

static pg_atomic_uint64 *my_gen = NULL;	/* this database's counter */

static pg_atomic_uint64 *
my_slot(void)
{
	if (my_gen == NULL)
	{
		int			i;

		SpinLockAcquire(&shared->mutex);
		for (i = 0; i < MA_GEN_SLOTS; i++)
			if (shared->db[i] == MyDatabaseId || shared->db[i] == InvalidOid)
				break;
		if (i < MA_GEN_SLOTS && OidIsValid(MyDatabaseId))
			shared->db[i] = MyDatabaseId;
		else
			i = MA_GEN_SLOTS;
		SpinLockRelease(&shared->mutex);
		my_gen = &shared->gen[i];
	}
	return my_gen;
}

/* One bump; extends the chain when it is this backend's pipeline's. */
static void
bump(bool own)
{
	uint64		old = pg_atomic_fetch_add_u64(my_slot(), 1);

	if (own && chain_ok && old == chain)
		chain = old + 1;
	else
		chain_ok = false;
}

static void
request_shmem(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(GenShared)));
}

static void
startup_shmem(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("metric_anomaly detect cache", sizeof(GenShared), &found);
	if (!found)
	{
		SpinLockInit(&shared->mutex);
		for (int i = 0; i < MA_GEN_SLOTS; i++)
			shared->db[i] = InvalidOid;
		for (int i = 0; i <= MA_GEN_SLOTS; i++)
			pg_atomic_init_u64(&shared->gen[i], 1);
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
flush(void)
{
	if (ma_dcache_entries() > 0)
		flushes++;
	ma_dcache_reset();
}

static void
forget(void)
{
	flush();
	chain_ok = false;
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (xact_wrote)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that changed metric_anomaly.aggregated_metrics"),
						 errdetail("Detection's cache in the worker could not learn of the change when it commits."),
						 errhint("Commit it directly, or set metric_anomaly.detect_cache_size to 0 in the server's configuration.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* after ProcArrayEndTransaction: the change is visible now */
			if (xact_wrote && shared != NULL)
				bump(true);
			xact_wrote = false;
			modified_level = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			holding = false;
			if (modified_level > 0)
				forget();
			xact_wrote = false;
			modified_level = 0;
			in_pipeline = false;
			break;
		default:
			break;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		if (modified_level >= level)
		{
			forget();
			modified_level = 0;
		}
		if (in_pipeline && pipeline_level >= level)
			in_pipeline = false;
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB && modified_level >= level)
		modified_level = level - 1;
}

/* Defines the setting and, when preloaded, asks for the counters. */
void
ma_detect_cache_define(void)
{
	DefineCustomIntVariable("metric_anomaly.detect_cache_size",
							"Memory per backend for the rows detection keeps between passes; 0 turns the cache off.",
							"A series at robust's default window takes about 9 kB, 15 kB with seasonal baselines (README).",
							&ma_detect_cache_size_mb,
							256, 0, 65536,
							PGC_SUSET,
							GUC_UNIT_MB,
							NULL, NULL, NULL);
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
	if (process_shared_preload_libraries_in_progress)
	{
		ma_request_shmem(request_shmem);
		prev_shmem_startup_hook = shmem_startup_hook;
		shmem_startup_hook = startup_shmem;
	}
}

/* ma_run_pass() starts: writes from here on are the pipeline's. */
void
ma_detect_cache_pass_begin(void)
{
	in_pipeline = true;
	pipeline_level = GetCurrentTransactionNestLevel();
}

void
ma_detect_cache_pass_end(void)
{
	in_pipeline = false;
}

/*
 * Called by detection just before its cursor takes its snapshot: flushes
 * what is held unless the chain is whole and the counter still stands at
 * its end; returns whether this pass may hold rows (and use held ones).
 */
bool
ma_detect_cache_begin(void)
{
	uint64		g;
	Oid			relid;

	if (shared == NULL || ma_detect_cache_size_mb == 0 || !in_pipeline ||
		IsolationUsesXactSnapshot())
	{
		forget();
		return false;
	}
	/* a table dropped and created again has a new OID and no bump */
	relid = get_relname_relid("aggregated_metrics",
							  get_namespace_oid("metric_anomaly", false));
	/* the add is a full barrier: no later read moves before it */
	g = pg_atomic_fetch_add_u64(my_slot(), 0);
	if (!chain_ok || g != chain || relid != held_relid)
	{
		flush();
		chain = g;
		chain_ok = true;
		held_relid = relid;
	}
	ma_dcache_begin_pass((Size) ma_detect_cache_size_mb * 1024 * 1024);
	holding = true;
	modified_level = Max(modified_level, GetCurrentTransactionNestLevel());
	return true;
}

/* Counts a series whose window (and seasonal rows) came from the cache. */
void
ma_detect_cache_count(bool window, bool season)
{
	window_hits += window;
	season_hits += season;
}

/* Detection's pass is over (its rows stay until commit or abort). */
void
ma_detect_cache_end(void)
{
	holding = false;
	ma_dcache_end_pass();
}

/*
 * detect_cache_invalidate(): the statement trigger on aggregated_metrics
 * (BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE, enabled ALWAYS).  Per
 * statement, never per row: one atomic add.
 */
Datum
metric_anomaly_detect_cache_invalidate(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("detect_cache_invalidate() must be called as a trigger")));
	if (shared != NULL)
	{
		xact_wrote = true;
		bump(in_pipeline);
	}
	return PointerGetDatum(NULL);
}

/*
 * detect_cache_stats(OUT entries integer, OUT bytes bigint,
 *                    OUT window_hits bigint, OUT season_hits bigint,
 *                    OUT flushes bigint)
 *
 * This backend's cache: series held, bytes counted against the limit,
 * series whose window and whose seasonal rows passes took from it, and
 * times it was flushed.
 */
Datum
metric_anomaly_detect_cache_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[5];
	bool		nulls[5] = {false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "metric_anomaly: detect_cache_stats() must return a record");
	values[0] = Int32GetDatum(ma_dcache_entries());
	values[1] = Int64GetDatum((int64) ma_dcache_bytes());
	values[2] = Int64GetDatum(window_hits);
	values[3] = Int64GetDatum(season_hits);
	values[4] = Int64GetDatum(flushes);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/*
 * detect_cache_held(metric_name text, OUT wfrom timestamptz,
 *                   OUT wuntil timestamptz, OUT first timestamptz,
 *                   OUT periods integer, OUT s0 timestamptz,
 *                   OUT s1 timestamptz)
 *
 * What this backend holds of a series (detect_cache.h) while a detection
 * pass uses the cache, for the pass's query; all NULL otherwise.
 */
Datum
metric_anomaly_detect_cache_held(PG_FUNCTION_ARGS)
{
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;
	Datum		values[6] = {0};
	bool		nulls[6] = {true, true, true, true, true, true};
	const MaDcacheEntry *e = NULL;

	/*
	 * The row type once per calling query: the query calls this once a
	 * series, and building the type each time was a third of its cost.
	 */
	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "metric_anomaly: detect_cache_held() must return a record");
		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = desc;
	}
	if (holding)
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

		e = ma_dcache_peek(name);
		pfree(name);
	}
	if (e != NULL && e->wuntil != 0)
	{
		values[0] = TimestampTzGetDatum(e->wfrom);
		values[1] = TimestampTzGetDatum(e->wuntil);
		values[2] = TimestampTzGetDatum(e->first);
		values[3] = Int32GetDatum(e->periods);
		values[4] = TimestampTzGetDatum(e->s0);
		values[5] = TimestampTzGetDatum(e->s1);
		memset(nulls, false, sizeof(nulls));
		nulls[2] = e->first == 0;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
