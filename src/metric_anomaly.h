/*
 * metric_anomaly.h
 *		Settings (GUCs) and names shared by every module of the extension.
 */
#ifndef METRIC_ANOMALY_H
#define METRIC_ANOMALY_H

#include "postgres.h"

#include "pg_compat.h"

#define MA_EXTENSION_NAME	"metric_anomaly"
#define MA_SCHEMA			"metric_anomaly"
#define MA_LIBRARY_NAME		"metric_anomaly"

/* Settings; see metric_anomaly.c for their meaning, defaults and bounds. */
extern char *ma_database;
extern int	ma_interval_s;
extern int	ma_batch_size;
extern int	ma_event_retention_s;
extern double ma_sigma;
extern int	ma_window;
extern int	ma_min_points;

/* Bounds callers cannot exceed. */
#define MA_MAX_BATCH_SIZE	1000000

#endif							/* METRIC_ANOMALY_H */
