/*
 * detect_sql.h
 *		The evidence of a 3-sigma evaluation as jsonb.
 */
#ifndef MA_DETECT_SQL_H
#define MA_DETECT_SQL_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "detect.h"

extern Jsonb *ma_three_sigma_context(const MaThreeSigma *r);

#endif							/* MA_DETECT_SQL_H */
