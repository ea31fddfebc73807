/*
 * detect_sql.h
 *		Evidence of a verdict as jsonb, and detection settings from jsonb.
 */
#ifndef MA_DETECT_SQL_H
#define MA_DETECT_SQL_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "detect.h"

extern Jsonb *ma_three_sigma_context(const MaThreeSigma *r);
extern Jsonb *ma_verdict_context(const MaVerdict *v);

extern void ma_detect_settings_defaults(MaDetectSettings *s);
extern void ma_detect_settings_apply(MaDetectSettings *s, Jsonb *settings);
extern bool ma_seasonality_parse(const char *name, bool *daily, bool *weekly);

#endif							/* MA_DETECT_SQL_H */
