/*
 * metric_anomaly.c
 *		Module entry point: defines the settings, installs the hook that
 *		makes the workers step aside for database commands and, when the
 *		library is preloaded, registers the launcher that starts the workers.
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "aggregate.h"
#include "alert.h"
#include "delivery.h"
#include "http.h"
#include "jwt_sql.h"
#include "detect_cache_sql.h"
#include "metric_anomaly.h"
#include "worker.h"

PG_MODULE_MAGIC;

char	   *ma_database = NULL;
int			ma_interval_s = 60;
int			ma_batch_size = 50000;
int			ma_event_retention_s = 7 * 24 * 3600;
double		ma_sigma = 3.0;
int			ma_window = 180;
int			ma_min_points = 90;

void		_PG_init(void);

/*
 * Defines the settings and, when preloaded, registers the launcher.
 * Settings that only the worker reads can change on reload; the database is
 * fixed at server start.
 */
void
_PG_init(void)
{
	/*
	 * Only the launcher reads the database, and it runs only when the
	 * library is preloaded; a server-start setting cannot be defined later.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("metric_anomaly.database",
								   "Database in which the aggregation worker runs.",
								   "The extension must be created in that database.",
								   &ma_database,
								   "postgres",
								   PGC_POSTMASTER,
								   0,
								   NULL, NULL, NULL);

	DefineCustomIntVariable("metric_anomaly.interval",
							"Time between two aggregation passes.",
							"Passes are aligned to multiples of this interval on the wall clock.",
							&ma_interval_s,
							60, 1, 3600,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("metric_anomaly.batch_size",
							"Events claimed, folded and marked per transaction.",
							NULL,
							&ma_batch_size,
							50000, 1, MA_MAX_BATCH_SIZE,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("metric_anomaly.event_retention",
							"How long processed events are kept; 0 keeps them forever.",
							NULL,
							&ma_event_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomRealVariable("metric_anomaly.sigma",
							 "Default number of standard deviations outside which a point is anomalous.",
							 "metric_anomaly.metrics.sigma overrides it per metric.",
							 &ma_sigma,
							 3.0, 0.1, 100.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("metric_anomaly.window",
							"Default number of previous points a point is compared with.",
							"metric_anomaly.metrics.window_size overrides it per metric.",
							&ma_window,
							180, 2, 10080,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("metric_anomaly.min_points",
							"Default number of previous points below which a point is not evaluated.",
							"metric_anomaly.metrics.min_points overrides it per metric.",
							&ma_min_points,
							90, 2, 10080,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	ma_alert_define_gucs();
	ma_aggregate_define_settings();
	ma_delivery_define_gucs();
	ma_http_define_gucs();
	ma_jwt_define_gucs();
	ma_detect_cache_define();

	ma_step_aside_install();
	MarkGUCPrefixReserved("metric_anomaly");

	if (process_shared_preload_libraries_in_progress && !IsBinaryUpgrade)
		ma_register_launcher();
}
