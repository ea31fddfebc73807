/*
 * sketch.h
 *		DDSketch: mergeable quantiles with a bounded relative error.
 *
 * Pure computation, no SPI, no fmgr: sketch_sql.c wraps it for SQL.
 */
#ifndef MA_SKETCH_H
#define MA_SKETCH_H

#include "postgres.h"

/* The relative accuracy alpha: a quantile is within 1% of a true sample. */
#define MA_SKETCH_ALPHA		0.01
/* Most bins a sketch keeps (see sketch.c on collapsing). */
#define MA_SKETCH_MAX_BINS	4096

typedef struct MaSketchBin
{
	int32		key;			/* ordered like the values it stands for */
	int64		count;
} MaSketchBin;

typedef struct MaSketch
{
	int64		count;
	double		min;
	double		max;
	int			nbins;
	int			capacity;
	MaSketchBin *bins;			/* sorted by key, palloc'd */
} MaSketch;

extern MaSketch *ma_sketch_create(void);
extern void ma_sketch_add(MaSketch *s, double value);
extern void ma_sketch_merge(MaSketch *into, const MaSketch *from);
extern double ma_sketch_quantile(const MaSketch *s, double q);
extern Size ma_sketch_serialized_size(const MaSketch *s);
extern void ma_sketch_serialize(const MaSketch *s, char *out);
extern MaSketch *ma_sketch_deserialize(const char *data, Size len);

#endif							/* MA_SKETCH_H */
