/*
 * jwt_sql.h
 *		The SQL side of JWT verification: jwt_claims(), record_event() and
 *		the metric_anomaly.jwt_leeway setting.
 */
#ifndef MA_JWT_SQL_H
#define MA_JWT_SQL_H

/* Defines metric_anomaly.jwt_leeway; called from _PG_init. */
extern void ma_jwt_define_gucs(void);

#endif							/* MA_JWT_SQL_H */
