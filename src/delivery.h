/*
 * delivery.h
 *		The delivery worker: posts pending alert deliveries outside any
 *		transaction and records each outcome.
 */
#ifndef MA_DELIVERY_H
#define MA_DELIVERY_H

#include "postgres.h"

#include "postmaster/bgworker.h"

#define MA_DELIVERY_BGW_TYPE	"metric_anomaly delivery"

/* Settings, defined in ma_alert_define_gucs(). */
extern int	ma_alert_max_attempts;
extern int	ma_alert_backoff_ms;

/*
 * Registers a dynamic delivery worker for database dboid (BGW_NEVER_RESTART;
 * whoever starts it restarts it).  notify_pid receives start/stop signals
 * (0 for none).  Returns false when no worker slot is free.
 */
extern bool ma_delivery_register(Oid dboid, pid_t notify_pid,
								 BackgroundWorkerHandle **handle);

#endif							/* MA_DELIVERY_H */
