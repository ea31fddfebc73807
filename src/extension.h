/*
 * extension.h
 *		Whether the installed SQL objects are those this library was built for.
 */
#ifndef MA_EXTENSION_H
#define MA_EXTENSION_H

#include "postgres.h"

/*
 * The extension version this library implements: default_version of
 * metric_anomaly.control, passed in by the Makefile so the two never differ.
 */
#ifndef MA_LIBRARY_VERSION
#error "MA_LIBRARY_VERSION must be defined (the Makefile takes it from metric_anomaly.control)"
#endif

extern bool ma_extension_is_current(void);
extern void ma_extension_require_current(void);

#endif							/* MA_EXTENSION_H */
