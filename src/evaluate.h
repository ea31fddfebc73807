/*
 * evaluate.h
 *		The detection step of a pass: evaluate every closed minute that is new
 *		or changed since it was last evaluated.
 */
#ifndef MA_EVALUATE_H
#define MA_EVALUATE_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern int64 ma_evaluate_pending(TimestampTz last_closed);

#endif							/* MA_EVALUATE_H */
