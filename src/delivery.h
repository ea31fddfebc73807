/*
 * delivery.h
 *		The delivery worker: posts pending alert deliveries outside any
 *		transaction and records each outcome.
 */
#ifndef MA_DELIVERY_H
#define MA_DELIVERY_H

#include "postgres.h"

#define MA_DELIVERY_BGW_TYPE	"metric_anomaly delivery"

/* Settings, defined in ma_alert_define_gucs(). */
extern int	ma_alert_max_attempts;
extern int	ma_alert_backoff_ms;

#endif							/* MA_DELIVERY_H */
