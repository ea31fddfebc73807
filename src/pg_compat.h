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

#endif							/* MA_PG_COMPAT_H */
