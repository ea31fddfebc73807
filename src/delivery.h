/*
 * delivery.h
 *		The delivery worker: claims due alert deliveries, sends them
 *		concurrently outside any transaction and records each outcome; also
 *		test_channel() and the settings of delivery.
 */
#ifndef MA_DELIVERY_H
#define MA_DELIVERY_H

#include "postgres.h"

#define MA_DELIVERY_BGW_TYPE	"metric_anomaly delivery"

/* Settings of delivery; called from _PG_init. */
extern void ma_delivery_define_gucs(void);

/* Entry point named in BackgroundWorker.bgw_function_name; main_arg is the database OID. */
extern PGDLLEXPORT void ma_delivery_main(Datum main_arg);

#endif							/* MA_DELIVERY_H */
