/*
 * metric_fold.c
 *		In-memory folding of a batch of events into the metric definitions.
 *
 * For each event and each definition reading its type (and whose filter
 * the payload contains, jsonb @>), in this order:
 * - the value at value_path (not for count) is classified
 *   (ma_payload_number()); an event without a usable value is counted as
 *   skipped for its reason and goes no further;
 * - an event whose business key is already held by an earlier event of the
 *   batch is a duplicate; the first one is held back (ma_metric_fold_keyed())
 *   until the caller knows whether an earlier batch counted the key;
 * - otherwise it is merged into the point of (definition, dimension
 *   values, bucket): count, sum, min, max, values at or below the
 *   threshold, and a DDSketch for quantiles.
 * Series names, the series cap and the stored state are the caller's: the
 * points leave with their dimension values, and the caller resolves them
 * against metric_series once per batch, not per event.
 *
 * Dimension values are encoded for hashing as, per dimension, one byte (0:
 * JSON null, 1: a value) and for a value its int32 length and bytes, cut
 * to MA_MAX_DIMENSION_CHARS characters as payload_dimensions() cuts them.
 *
 * Memory is bounded by the batch: at most one point per (event,
 * definition), so batch_size x definitions points, each with a sketch of at
 * most min(values, MA_SKETCH_MAX_BINS) bins, and at most one held-back
 * keyed event per (event, definition).  Everything lives in the context
 * given, which the caller drops after the batch; the per-event work
 * (numbers as text, JSON of objects) goes to a context reset after each
 * event.  No SPI.
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"

#include "metric_fold.h"

const char *const ma_skip_reason_names[MA_SKIP_NREASONS] = {
	"missing", "non_numeric", "wrong_type", "duplicate"
};

static inline uint32
point_hash(const MaMetricPointKey *k)
{
	uint32		h = hash_bytes((const unsigned char *) k->dims, k->dimslen);

	h = hash_combine(h, hash_bytes_uint32((uint32) k->def));
	return hash_combine(h, hash_bytes_uint32((uint32) k->bucket) ^
						(uint32) (k->bucket >> 32));
}

static inline bool
point_equal(const MaMetricPointKey *a, const MaMetricPointKey *b)
{
	return a->bucket == b->bucket && a->def == b->def &&
		a->dimslen == b->dimslen && memcmp(a->dims, b->dims, a->dimslen) == 0;
}

/*
 * The points by key.  The points live outside the table (whose entries
 * move as it grows), so a series can keep its last one (SeriesEntry.last).
 */
typedef struct PointEntry
{
	MaMetricPointKey key;
	MaMetricPoint *point;
	uint32		hash;
	char		status;
} PointEntry;

#define SH_PREFIX			pointtab
#define SH_ELEMENT_TYPE		PointEntry
#define SH_KEY_TYPE			MaMetricPointKey
#define SH_KEY				key
#define SH_HASH_KEY(tb, k)	point_hash(&(k))
#define SH_EQUAL(tb, a, b)	point_equal(&(a), &(b))
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/*
 * The series of the batch, by (definition, dimension values), with the
 * point the series' last event went to: events come in (xid, id) order,
 * which is about time order, so the next event of the series mostly goes
 * to the same bucket, found without a probe of the table of all the
 * batch's points (for 1,000,000 events in one batch, 44,643 points: a few
 * megabytes, a cache miss or two per probe, against a table of 31 series).
 */
typedef struct SeriesEntry
{
	MaMetricSeries key;
	int			index;
	MaMetricPoint *last;		/* NULL until the series has a point */
	uint32		hash;
	char		status;
} SeriesEntry;

static inline uint32
series_hash(const MaMetricSeries *k)
{
	return hash_combine(hash_bytes((const unsigned char *) k->dims, k->dimslen),
						hash_bytes_uint32((uint32) k->def));
}

static inline bool
series_equal(const MaMetricSeries *a, const MaMetricSeries *b)
{
	return a->def == b->def && a->dimslen == b->dimslen &&
		memcmp(a->dims, b->dims, a->dimslen) == 0;
}

#define SH_PREFIX			seriestab
#define SH_ELEMENT_TYPE		SeriesEntry
#define SH_KEY_TYPE			MaMetricSeries
#define SH_KEY				key
#define SH_HASH_KEY(tb, k)	series_hash(&(k))
#define SH_EQUAL(tb, a, b)	series_equal(&(a), &(b))
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* The business keys the batch has seen, per definition. */
typedef struct SeenKey
{
	int			def;
	const char *key;
	int			len;
} SeenKey;

typedef struct SeenEntry
{
	SeenKey		key;
	uint32		hash;
	char		status;
} SeenEntry;

static inline uint32
seen_hash(const SeenKey *k)
{
	return hash_combine(hash_bytes((const unsigned char *) k->key, k->len),
						hash_bytes_uint32((uint32) k->def));
}

static inline bool
seen_equal(const SeenKey *a, const SeenKey *b)
{
	return a->def == b->def && a->len == b->len && memcmp(a->key, b->key, a->len) == 0;
}

#define SH_PREFIX			seentab
#define SH_ELEMENT_TYPE		SeenEntry
#define SH_KEY_TYPE			SeenKey
#define SH_KEY				key
#define SH_HASH_KEY(tb, k)	seen_hash(&(k))
#define SH_EQUAL(tb, a, b)	seen_equal(&(a), &(b))
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

struct MaMetricFold
{
	MemoryContext cxt;
	MemoryContext scratch;		/* reset after each event */
	MaMetricDef *defs;
	int			ndefs;
	pointtab_hash *points;
	seriestab_hash *seriestab;
	MaMetricSeries *series;		/* in order of first sight */
	int			nseries;
	int			series_capacity;
	seentab_hash *seen;			/* NULL until a keyed event comes */
	MaKeyedEvent *keyed;
	int			nkeyed;
	int			keyed_capacity;
	StringInfoData dims;		/* the event's encoded dimension values */
	/* the event's values, read once per distinct value path */
	int			nslots;
	bool	   *slot_read;
	MaValueStatus *slot_status;
	double	   *slot_value;
};

static bool
same_path(const MaPath *a, const MaPath *b)
{
	if (a->n != b->n)
		return false;
	for (int i = 0; i < a->n; i++)
		if (a->len[i] != b->len[i] || memcmp(a->elem[i], b->elem[i], a->len[i]) != 0)
			return false;
	return true;
}

/*
 * Gives definitions with the same value path the same slot, so an event's
 * value is looked up and converted once (a p95 and a sum of the same
 * latency, say).
 */
static void
assign_value_slots(MaMetricFold *fold)
{
	fold->nslots = 0;
	for (int d = 0; d < fold->ndefs; d++)
	{
		MaMetricDef *def = &fold->defs[d];

		def->value_slot = -1;
		if (def->value_path.n == 0)
			continue;
		for (int e = 0; e < d && def->value_slot < 0; e++)
			if (fold->defs[e].value_slot >= 0 &&
				same_path(&fold->defs[e].value_path, &def->value_path))
				def->value_slot = fold->defs[e].value_slot;
		if (def->value_slot < 0)
			def->value_slot = fold->nslots++;
	}
	fold->slot_read = MemoryContextAllocZero(fold->cxt, sizeof(bool) * Max(fold->nslots, 1));
	fold->slot_status = MemoryContextAlloc(fold->cxt, sizeof(MaValueStatus) * Max(fold->nslots, 1));
	fold->slot_value = MemoryContextAlloc(fold->cxt, sizeof(double) * Max(fold->nslots, 1));
}

/* Creates an empty fold for defs (kept, not copied) in cxt. */
MaMetricFold *
ma_metric_fold_create(MemoryContext cxt, MaMetricDef *defs, int ndefs)
{
	MaMetricFold *fold = MemoryContextAllocZero(cxt, sizeof(MaMetricFold));
	MemoryContext old;

	fold->cxt = cxt;
	fold->scratch = AllocSetContextCreate(cxt, "metric_anomaly metric event",
										  ALLOCSET_SMALL_SIZES);
	fold->defs = defs;
	fold->ndefs = ndefs;
	fold->points = pointtab_create(cxt, 256, NULL);
	fold->seriestab = seriestab_create(cxt, 64, NULL);
	fold->series_capacity = 64;
	fold->series = MemoryContextAlloc(cxt, sizeof(MaMetricSeries) * fold->series_capacity);
	old = MemoryContextSwitchTo(cxt);
	initStringInfo(&fold->dims);
	MemoryContextSwitchTo(old);
	assign_value_slots(fold);
	return fold;
}

static inline bool
reads_type(const MaMetricDef *def, const char *type, int len)
{
	for (int i = 0; i < def->event_types.n; i++)
		if (def->event_types.len[i] == len &&
			memcmp(def->event_types.elem[i], type, len) == 0)
			return true;
	return false;
}

/* True when some definition reads events of type (len bytes). */
bool
ma_metric_fold_reads(MaMetricFold *fold, const char *type, int len)
{
	for (int d = 0; d < fold->ndefs; d++)
		if (reads_type(&fold->defs[d], type, len))
			return true;
	return false;
}

/* The start of the bucket of resolution res (microseconds) holding ts. */
static inline TimestampTz
bucket_floor(TimestampTz ts, int64 res)
{
	/*
	 * Relative to 2000-01-01, which is a whole number of hours after the
	 * Unix epoch, so the buckets are those of to_timestamp(floor(epoch /
	 * res) * res).
	 */
	TimestampTz b = ts - ts % res;

	if (b > ts)
		b -= res;
	return b;
}

static void
skip(MaMetricDef *def, MaSkipReason why, int64 id)
{
	if (def->skipped[why] == 0 || id > def->skipped_last_id[why])
		def->skipped_last_id[why] = id;
	def->skipped[why]++;
}

/* Encodes def's dimension values of payload into fold->dims. */
static void
encode_dims(MaMetricFold *fold, const MaMetricDef *def, Jsonb *payload)
{
	resetStringInfo(&fold->dims);
	for (int i = 0; i < def->dimensions.n; i++)
	{
		MaPath		one;
		JsonbValue	buf;
		JsonbValue *v;

		one.n = 1;
		one.elem = &def->dimensions.elem[i];
		one.len = &def->dimensions.len[i];
		v = (payload != NULL && JB_ROOT_IS_OBJECT(payload)) ?
			ma_payload_get(payload, &one, &buf) : NULL;
		if (v == NULL || v->type == jbvNull)
			appendStringInfoChar(&fold->dims, 0);
		else
		{
			int			len;
			char	   *s = ma_payload_text(v, &len);
			int32		cut = ma_dimension_clip(s, len);

			appendStringInfoChar(&fold->dims, 1);
			appendBinaryStringInfo(&fold->dims, (char *) &cut, sizeof(cut));
			appendBinaryStringInfo(&fold->dims, s, cut);
		}
	}
}

/*
 * The series of the point at key, added (with a copy of the dimension
 * values) when new.  The entry is valid until the next insertion.
 */
static SeriesEntry *
series_of(MaMetricFold *fold, const MaMetricPointKey *key)
{
	MaMetricSeries sk;
	SeriesEntry *e;
	bool		found;
	char	   *copy;

	sk.def = key->def;
	sk.dims = key->dims;
	sk.dimslen = key->dimslen;
	e = seriestab_insert(fold->seriestab, sk, &found);
	if (found)
		return e;
	copy = MemoryContextAlloc(fold->cxt, Max(key->dimslen, 1));
	memcpy(copy, key->dims, key->dimslen);
	e->key.dims = copy;
	e->last = NULL;
	if (fold->nseries == fold->series_capacity)
	{
		fold->series_capacity *= 2;
		fold->series = repalloc(fold->series,
								sizeof(MaMetricSeries) * fold->series_capacity);
	}
	e->index = fold->nseries;
	fold->series[fold->nseries++] = e->key;
	return e;
}

/* A new empty point at key (of series; -1: _other), in the fold's context. */
static MaMetricPoint *
new_point(MaMetricFold *fold, const MaMetricPointKey *key, int series, double value)
{
	MaMetricPoint *p = MemoryContextAlloc(fold->cxt, sizeof(MaMetricPoint));

	p->key = *key;
	p->series = series;
	p->count = 0;
	p->sum = 0;
	p->min = value;
	p->max = value;
	p->within = 0;
	p->sketch = NULL;
	return p;
}

/* Adds the state of from into into (of the same definition). */
static void
merge_point(MaMetricFold *fold, MaMetricPoint *into, const MaMetricPoint *from)
{
	if (into->count == 0)
	{
		into->sum = from->sum;
		into->min = from->min;
		into->max = from->max;
	}
	else
	{
		into->sum += from->sum;
		into->min = Min(into->min, from->min);
		into->max = Max(into->max, from->max);
	}
	into->count += from->count;
	into->within += from->within;
	if (from->sketch != NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fold->cxt);

		if (into->sketch == NULL)
			into->sketch = ma_sketch_create();
		ma_sketch_merge(into->sketch, from->sketch);
		MemoryContextSwitchTo(old);
	}
}

/* Merges value (ignored for count) into the point at key. */
static void
merge(MaMetricFold *fold, const MaMetricPointKey *key, double value)
{
	const MaMetricDef *def = &fold->defs[key->def];
	SeriesEntry *s = series_of(fold, key);
	MaMetricPoint *p = s->last;

	if (p == NULL || p->key.bucket != key->bucket)
	{
		MaMetricPointKey k = *key;
		PointEntry *e;
		bool		found;

		k.dims = s->key.dims;	/* the series' copy */
		e = pointtab_insert(fold->points, k, &found);
		if (!found)
		{
			e->point = new_point(fold, &k, s->index, value);
			if (def->agg == MA_AGG_QUANTILE)
			{
				MemoryContext old = MemoryContextSwitchTo(fold->cxt);

				e->point->sketch = ma_sketch_create();
				MemoryContextSwitchTo(old);
			}
		}
		p = e->point;
		s->last = p;
	}
	p->count++;
	if (def->agg == MA_AGG_COUNT)
		return;
	p->sum += value;
	if (value < p->min)
		p->min = value;
	if (value > p->max)
		p->max = value;
	if (def->agg == MA_AGG_RATE && value <= def->threshold)
		p->within++;
	if (p->sketch != NULL)
		ma_sketch_add(p->sketch, value);
}

/*
 * True when the business key of def in payload was seen before in the
 * batch (a duplicate); when it is the first, holds the event back.  An
 * event without a key (missing, JSON null) is never a duplicate.
 */
static bool
hold_keyed(MaMetricFold *fold, int d, Jsonb *payload, int64 id, TimestampTz ts,
		   const MaMetricPointKey *key, double value)
{
	MaMetricDef *def = &fold->defs[d];
	JsonbValue	buf;
	JsonbValue *v = ma_payload_get(payload, &def->business_key, &buf);
	SeenKey		sk;
	SeenEntry  *seen;
	bool		found;
	MaKeyedEvent *ev;
	char	   *copy;

	if (v == NULL || v->type == jbvNull)
	{
		merge(fold, key, value);
		return false;
	}
	sk.def = d;
	sk.key = ma_payload_text(v, &sk.len);
	if (fold->seen == NULL)
	{
		fold->seen = seentab_create(fold->cxt, 256, NULL);
		fold->keyed_capacity = 256;
		fold->keyed = MemoryContextAlloc(fold->cxt,
										 sizeof(MaKeyedEvent) * fold->keyed_capacity);
	}
	seen = seentab_insert(fold->seen, sk, &found);
	if (found)
		return true;

	/* the key and dimension values outlive the event: copy them */
	copy = MemoryContextAlloc(fold->cxt, sk.len + 1 + Max(key->dimslen, 1));
	memcpy(copy, sk.key, sk.len);
	copy[sk.len] = '\0';
	memcpy(copy + sk.len + 1, key->dims, key->dimslen);
	seen->key.key = copy;
	if (fold->nkeyed == fold->keyed_capacity)
	{
		fold->keyed_capacity *= 2;
		fold->keyed = repalloc(fold->keyed,
							   sizeof(MaKeyedEvent) * fold->keyed_capacity);
	}
	ev = &fold->keyed[fold->nkeyed++];
	ev->def = d;
	ev->key = copy;
	ev->id = id;
	ev->ts = ts;
	ev->point = *key;
	ev->point.dims = copy + sk.len + 1;
	ev->value = value;
	return false;
}

/* Folds one event into every definition that reads it. */
static void
fold_one(MaMetricFold *fold, const char *type, int len, TimestampTz ts,
		 int64 id, Jsonb *payload)
{
	for (int d = 0; d < fold->ndefs; d++)
	{
		MaMetricDef *def = &fold->defs[d];
		MaMetricPointKey key;
		double		value = 0;

		if (!reads_type(def, type, len))
			continue;
		if (def->filter != NULL &&
			(payload == NULL ||
			 !DatumGetBool(DirectFunctionCall2(jsonb_contains,
											   JsonbPGetDatum(payload),
											   JsonbPGetDatum(def->filter)))))
			continue;
		if (def->value_slot >= 0)
		{
			int			slot = def->value_slot;

			if (!fold->slot_read[slot])
			{
				JsonbValue	buf;

				fold->slot_status[slot] =
					ma_payload_number(ma_payload_get(payload, &def->value_path, &buf),
									  &fold->slot_value[slot]);
				fold->slot_read[slot] = true;
			}
			value = fold->slot_value[slot];
			switch (fold->slot_status[slot])
			{
				case MA_VALUE_OK:
					break;
				case MA_VALUE_MISSING:
					skip(def, MA_SKIP_MISSING, id);
					continue;
				case MA_VALUE_NON_NUMERIC:
					skip(def, MA_SKIP_NON_NUMERIC, id);
					continue;
				case MA_VALUE_WRONG_TYPE:
					skip(def, MA_SKIP_WRONG_TYPE, id);
					continue;
			}
		}
		encode_dims(fold, def, payload);
		key.def = d;
		key.dims = fold->dims.data;
		key.dimslen = fold->dims.len;
		key.bucket = bucket_floor(ts, def->resolution);
		if (def->business_key.n == 0)
			merge(fold, &key, value);
		else if (hold_keyed(fold, d, payload, id, ts, &key, value))
			skip(def, MA_SKIP_DUPLICATE, id);
	}
}

/*
 * Folds the event (type of len bytes, dated ts, payload NULL when SQL
 * NULL) into every definition that reads it.
 */
void
ma_metric_fold_event(MaMetricFold *fold, const char *type, int len,
					 TimestampTz ts, int64 id, Jsonb *payload)
{
	MemoryContext old = MemoryContextSwitchTo(fold->scratch);

	memset(fold->slot_read, 0, sizeof(bool) * fold->nslots);
	fold_one(fold, type, len, ts, id, payload);
	MemoryContextSwitchTo(old);
	MemoryContextReset(fold->scratch);
}

/* The keyed events held back (the first of each key in the batch). */
MaKeyedEvent *
ma_metric_fold_keyed(MaMetricFold *fold, int *n)
{
	*n = fold->nkeyed;
	return fold->keyed;
}

/*
 * Settles a held-back event: merged when its key is fresh (no earlier batch
 * counted it), else skipped as a duplicate.
 */
void
ma_metric_fold_admit(MaMetricFold *fold, MaKeyedEvent *ev, bool fresh)
{
	if (fresh)
		merge(fold, &ev->point, ev->value);
	else
		skip(&fold->defs[ev->def], MA_SKIP_DUPLICATE, ev->id);
}

/* The series the batch has points of (indexes of MaMetricPoint.series). */
MaMetricSeries *
ma_metric_fold_series(MaMetricFold *fold, int *n)
{
	*n = fold->nseries;
	return fold->series;
}

/*
 * The points, in no particular order (an array in the fold's context), with
 * those of the series marked in overflow merged per (definition, bucket)
 * into points of series -1, the definition's _other series.
 */
MaMetricPoint **
ma_metric_fold_points(MaMetricFold *fold, const bool *overflow, uint32 *n)
{
	MaMetricPoint **out;
	pointtab_iterator it;
	PointEntry *e;
	pointtab_hash *other = NULL;
	uint32		i = 0;

	out = MemoryContextAlloc(fold->cxt,
							 sizeof(MaMetricPoint *) * Max(fold->points->members, 1));
	pointtab_start_iterate(fold->points, &it);
	while ((e = pointtab_iterate(fold->points, &it)) != NULL)
	{
		MaMetricPoint *p = e->point;
		MaMetricPointKey key;
		PointEntry *o;
		bool		found;

		if (!overflow[p->series])
		{
			out[i++] = p;
			continue;
		}
		if (other == NULL)
			other = pointtab_create(fold->cxt, 64, NULL);
		key = p->key;
		key.dims = "";			/* one _other point per (definition, bucket) */
		key.dimslen = 0;
		o = pointtab_insert(other, key, &found);
		if (!found)
			o->point = new_point(fold, &key, -1, 0);
		merge_point(fold, o->point, p);
	}
	if (other != NULL)
	{
		pointtab_start_iterate(other, &it);
		while ((e = pointtab_iterate(other, &it)) != NULL)
			out[i++] = e->point;	/* fewer than the overflowed points */
	}
	*n = i;
	return out;
}

MaMetricDef *
ma_metric_fold_defs(MaMetricFold *fold, int *n)
{
	*n = fold->ndefs;
	return fold->defs;
}

/* The dimension values of series s as payload_dimensions() gives them. */
Jsonb *
ma_metric_fold_dims_jsonb(MaMetricFold *fold, const MaMetricSeries *s)
{
	const MaMetricDef *def = &fold->defs[s->def];
	const char **vals = palloc(sizeof(char *) * Max(def->dimensions.n, 1));
	int		   *lens = palloc(sizeof(int) * Max(def->dimensions.n, 1));
	const char *at = s->dims;

	for (int i = 0; i < def->dimensions.n; i++)
	{
		if (*at++ == 0)
		{
			vals[i] = NULL;
			continue;
		}
		memcpy(&lens[i], at, sizeof(int32));
		at += sizeof(int32);
		vals[i] = at;
		at += lens[i];
	}
	return ma_dimensions_jsonb(&def->dimensions, vals, lens);
}
