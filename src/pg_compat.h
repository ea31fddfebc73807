/*
 * pg_compat.h
 *		Every difference between the PostgreSQL versions the extension
 *		builds against (13 to 19), in one place, so that call sites read
 *		the same on all of them.
 *
 * Each shim names the version that changed the API and why the stand-in
 * means the same thing.  A shim is written as the newer API (the name the
 * code uses) defined in terms of the older one, so dropping a version is
 * deleting its block.  test/matrix (make test-matrix) builds and tests the
 * tree on every Debian suite's server, so a new difference shows up there.
 */
#ifndef MA_PG_COMPAT_H
#define MA_PG_COMPAT_H

#include "postgres.h"

#include "access/xact.h"
#include "utils/guc.h"
#include "utils/hsearch.h"

/*
 * 19 moved get_database_name() from commands/dbcommands.h to
 * utils/lsyscache.h, and get_database_oid() to catalog/pg_database.h;
 * include whichever declares them.
 */
#if PG_VERSION_NUM >= 190000
#include "catalog/pg_database.h"
#include "utils/lsyscache.h"
#else
#include "commands/dbcommands.h"
#endif

/*
 * 16 moved the varlena macros (VARDATA, SET_VARSIZE, ...) out of
 * postgres.h into varatt.h, which only some headers include; a file that
 * builds a bytea with nothing but fmgr.h needs it named.
 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * 14 added HASH_STRINGS and made hash_create() insist on one of
 * HASH_STRINGS, HASH_BLOBS or HASH_FUNCTION.  Before 14 a table with none
 * of the three hashed its keys as NUL-terminated strings, so the flag
 * means "nothing" there.
 */
#if PG_VERSION_NUM < 140000
#define HASH_STRINGS 0
#endif

/*
 * 14 exported int64_to_numeric() (utils/numeric.h); before it the same
 * conversion is the SQL-callable int8_numeric().
 */
#if PG_VERSION_NUM < 140000
#include "utils/fmgrprotos.h"
#define int64_to_numeric(val) \
	DatumGetNumeric(DirectFunctionCall1(int8_numeric, Int64GetDatum(val)))
#endif

/*
 * 15 renamed EmitWarningsOnPlaceholders() to MarkGUCPrefixReserved(),
 * which also removes the placeholders it warns about; the older call
 * warns only.
 */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(className) EmitWarningsOnPlaceholders(className)
#endif

/*
 * 18 made pg_b64_encode() take its input as const uint8 * (it was
 * const char *); MA_B64_SRC casts a pointer to what this version wants.
 */
#if PG_VERSION_NUM >= 180000
#define MA_B64_SRC(p) ((const uint8 *) (p))
#else
#define MA_B64_SRC(p) ((const char *) (p))
#endif

/*
 * 14 added readOnlyTree to ProcessUtility_hook_type (after queryString).
 * MA_UTILITY_HOOK_ARGS declares a hook's parameters and
 * MA_UTILITY_HOOK_CALL(fn) passes them on to the next hook.
 */
#if PG_VERSION_NUM >= 140000
#define MA_UTILITY_HOOK_ARGS \
	PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define MA_UTILITY_HOOK_CALL(fn) \
	(fn) (pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc)
#else
#define MA_UTILITY_HOOK_ARGS \
	PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define MA_UTILITY_HOOK_CALL(fn) \
	(fn) (pstmt, queryString, context, params, queryEnv, dest, qc)
#endif

/*
 * 18 replaced the postfix pg_attribute_noreturn() with a prefix
 * pg_noreturn (C11 _Noreturn).  GCC and clang take the attribute after a
 * declarator too, so the older spelling keeps working there.
 */
#ifndef pg_attribute_noreturn
#define pg_attribute_noreturn() __attribute__((noreturn))
#endif

/*
 * 17 added AmBackgroundWorkerProcess() (MyBackendType == B_BG_WORKER), and
 * 18 removed the IsBackgroundWorker flag it replaced; before 17 the flag
 * is the same test.
 */
#if PG_VERSION_NUM < 170000
#include "miscadmin.h"
#define AmBackgroundWorkerProcess() IsBackgroundWorker
#endif

/*
 * 15 added common/pg_prng.h; before it random() was the backend's
 * generator.  MA_RANDOM_FRACTION() is uniform in [0, 1) on both.
 */
#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#define MA_RANDOM_FRACTION() pg_prng_double(&pg_global_prng_state)
#else
#define MA_RANDOM_FRACTION() ((double) random() / ((double) MAX_RANDOM_VALUE + 1))
#endif

/*
 * 19 made pushJsonbValue() build into a caller's JsonbInState (zeroed by
 * the caller; the finished value is its result) and return nothing; before
 * 19 it took a JsonbParseState ** and returned the value built so far,
 * which after the last token closes the outermost container is the
 * finished one.  The stand-in keeps the parse stack and that value in a
 * JsonbInState of its own with the same two fields.
 */
#if PG_VERSION_NUM < 190000
#include "utils/jsonb.h"

typedef struct JsonbInState
{
	JsonbValue *result;			/* the value built so far */
	JsonbParseState *parseState;	/* stack of open containers */
} JsonbInState;

static inline void
ma_push_jsonb_value(JsonbInState *state, JsonbIteratorToken seq, JsonbValue *val)
{
	state->result = pushJsonbValue(&state->parseState, seq, val);
}

#define pushJsonbValue(state, seq, val) ma_push_jsonb_value(state, seq, val)
#endif

/*
 * 15 added shmem_request_hook, the only place shared memory may be asked
 * for from then on; before 15 a preloaded library asked in _PG_init.
 * ma_request_shmem(fn) runs fn at the right time on both.
 */
#include "miscadmin.h"		/* shmem_request_hook */
#include "storage/ipc.h"
typedef void (*MaShmemRequest) (void);
#if PG_VERSION_NUM >= 150000
static inline MaShmemRequest *
ma_shmem_request_state(shmem_request_hook_type **prev)
{
	static MaShmemRequest request;
	static shmem_request_hook_type previous;

	*prev = &previous;
	return &request;
}

static inline void
ma_shmem_request_run(void)
{
	shmem_request_hook_type *prev;
	MaShmemRequest *request = ma_shmem_request_state(&prev);

	if (*prev)
		(*prev) ();
	(*request) ();
}

static inline void
ma_request_shmem(MaShmemRequest fn)
{
	shmem_request_hook_type *prev;

	*ma_shmem_request_state(&prev) = fn;
	*prev = shmem_request_hook;
	shmem_request_hook = ma_shmem_request_run;
}
#else
static inline void
ma_request_shmem(MaShmemRequest fn)
{
	fn();
}
#endif

/*
 * 14 added SPI_execute_plan_extended(), whose options can send a
 * statement's rows to a DestReceiver as the executor produces them; 13 has
 * SPI_execute_plan_with_paramlist() alone, which collects every row in
 * SPI_tuptable first.  The stand-in runs the plan that way (params,
 * read_only and tcount as given, so the snapshot is taken as on 14) and
 * then hands SPI_tuptable's rows to dest one slot at a time, calling
 * rStartup, receiveSlot and rShutdown as 14's executor does (startup and
 * shutdown also for no rows).  What differs is only when the rows arrive
 * and what they cost: all of them are in memory before the first is
 * handed over, and a receiveSlot that returns false stops the rows it is
 * handed, not the statement, which has already run to the end.  Like 14 it
 * leaves no SPI_tuptable, sets SPI_processed to the rows handed over, and
 * reports a SELECT whose rows go to a receiver as SPI_OK_UTILITY (14's
 * _SPI_pquery: the result is "discarded" for SPI's own purposes; later
 * versions say the same of a DestNone receiver, which ma_receiver_init()
 * makes).  allow_nonatomic, must_return_tuples and owner have no 13
 * equivalent: the stand-in refuses them rather than ignore them.
 */
#if PG_VERSION_NUM < 140000
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "tcop/dest.h"
#include "utils/resowner.h"

typedef struct SPIExecuteOptions
{
	ParamListInfo params;
	bool		read_only;
	bool		allow_nonatomic;
	bool		must_return_tuples;
	uint64		tcount;
	DestReceiver *dest;
	ResourceOwner owner;
} SPIExecuteOptions;

/* Hands the rows of tt, the result of a statement reported as rc, to dest. */
static inline uint64
ma_spi_send_rows(SPITupleTable *tt, int rc, DestReceiver *dest)
{
	int			operation;
	TupleTableSlot *slot;
	uint64		sent = 0;

	switch (rc)
	{
		case SPI_OK_INSERT_RETURNING:
			operation = CMD_INSERT;
			break;
		case SPI_OK_UPDATE_RETURNING:
			operation = CMD_UPDATE;
			break;
		case SPI_OK_DELETE_RETURNING:
			operation = CMD_DELETE;
			break;
		default:
			operation = CMD_SELECT;
			break;
	}
	slot = MakeSingleTupleTableSlot(tt->tupdesc, &TTSOpsHeapTuple);
	dest->rStartup(dest, operation, tt->tupdesc);
	while (sent < tt->numvals)
	{
		bool		more;

		ExecStoreHeapTuple(tt->vals[sent], slot, false);
		more = dest->receiveSlot(slot, dest);
		ExecClearTuple(slot);
		if (!more)
			break;
		sent++;
	}
	dest->rShutdown(dest);
	ExecDropSingleTupleTableSlot(slot);
	return sent;
}

static inline int
SPI_execute_plan_extended(SPIPlanPtr plan, const SPIExecuteOptions *options)
{
	int			rc;

	if (options == NULL)
		return SPI_ERROR_ARGUMENT;
	if (options->allow_nonatomic || options->must_return_tuples ||
		options->owner != NULL)
		elog(ERROR, "metric_anomaly: SPI_execute_plan_extended() option not available before PostgreSQL 14");
	rc = SPI_execute_plan_with_paramlist(plan, options->params,
										 options->read_only,
										 (long) options->tcount);
	if (rc < 0 || options->dest == NULL || SPI_tuptable == NULL)
		return rc;
	SPI_processed = ma_spi_send_rows(SPI_tuptable, rc, options->dest);
	SPI_freetuptable(SPI_tuptable);
	SPI_tuptable = NULL;
	return rc == SPI_OK_SELECT ? SPI_OK_UTILITY : rc;
}
#endif

/*
 * 15 added an errstr argument to pg_md5_binary() (the reason a failure
 * gives, from the cryptohash layer).  Before 15 the function fails only
 * without saying why (13: out of memory; 14: out of memory or an OpenSSL
 * error), so the stand-in's reason says just that.
 */
#if PG_VERSION_NUM < 150000
#include "common/md5.h"

static inline bool
ma_md5_binary(const void *buff, size_t len, void *outbuf, const char **errstr)
{
	*errstr = NULL;
	if (pg_md5_binary(buff, len, outbuf))
		return true;
	*errstr = "the server before PostgreSQL 15 gives no reason";
	return false;
}

#define pg_md5_binary(buff, len, outbuf, errstr) \
	ma_md5_binary(buff, len, outbuf, errstr)
#endif

#endif							/* MA_PG_COMPAT_H */
