/*
 * worker.h
 *		The launcher and the per-database aggregation worker.
 */
#ifndef MA_WORKER_H
#define MA_WORKER_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern void ma_register_launcher(void);

/* Entry points named in BackgroundWorker.bgw_function_name. */
extern PGDLLEXPORT void ma_launcher_main(Datum main_arg);
extern PGDLLEXPORT void ma_worker_main(Datum main_arg);

#endif							/* MA_WORKER_H */
