/*
 * worker.h
 *		The launcher, the per-database aggregation worker, and what every
 *		worker of the extension shares: how it connects, how it is made
 *		unique in its database, and how it steps aside for database commands.
 */
#ifndef MA_WORKER_H
#define MA_WORKER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/lock.h"

#include "pg_compat.h"

/*
 * The extension's own locks, advisory lock tags that SQL cannot take:
 * pg_advisory_lock() uses field4 1 or 2, these use MA_LOCK_SPACE in field2
 * and field4, and the database in field1.  pg_locks shows them to every
 * role as locktype 'advisory', classid 28001, objid = the kind,
 * objsubid 28001, which is how worker_status finds the workers.
 */
#define MA_LOCK_SPACE		28001	/* "ma" */
typedef enum MaLockKind
{
	MA_LOCK_AGGREGATION = 1,	/* held by the aggregation worker serving the database */
	MA_LOCK_DELIVERY = 2,		/* held by the delivery worker serving the database */
	MA_LOCK_ALIVE = 3,			/* shared by every worker connected to the database */
	MA_LOCK_PAUSE = 4,			/* held by a database command the workers give way to */
	MA_LOCK_START = 5			/* serialises start_worker() calls */
} MaLockKind;

extern void ma_lock_tag(LOCKTAG *tag, Oid dboid, MaLockKind kind);
extern List *ma_lock_holders(Oid dboid, MaLockKind kind);

extern void ma_register_launcher(void);

/* Used by every worker of the extension (aggregation and delivery). */
extern void ma_worker_connect(Oid dboid, const char *type);
extern bool ma_worker_claim(MaLockKind kind, bool *reported);
extern void ma_worker_set_busy(bool busy);
extern bool ma_worker_loop_top(void);
extern void ma_worker_leave_if_stepping_aside(void);
extern void ma_worker_step_aside_exit(void) pg_attribute_noreturn();

/* The utility hook that makes the workers give way (step_aside.c). */
extern void ma_step_aside_install(void);
extern void ma_debug_hold_round(void);

/* Entry points named in BackgroundWorker.bgw_function_name. */
extern PGDLLEXPORT void ma_launcher_main(Datum main_arg);
extern PGDLLEXPORT void ma_worker_main(Datum main_arg);

#endif							/* MA_WORKER_H */
