/*
 * sketch.c
 *		DDSketch (Masson, Rim, Lee, VLDB 2019): quantiles whose relative
 *		error is at most alpha, with exact merges.
 *
 * A value x > 0 falls into bin i = ceil(log(x) / log(gamma)), gamma =
 * (1 + alpha) / (1 - alpha), that is x in (gamma^(i-1), gamma^i]; the bin
 * stands for 2 gamma^i / (gamma + 1), which is within alpha of every value
 * in it.  Negative values use the bin of |x| mirrored; values with
 * |x| < MIN_INDEXABLE share one bin standing for 0.  One sorted array of
 * (key, count) covers all three: key < 0 for negative values (more negative
 * for larger |x|), key 0 for about zero, key > 0 for positive ones, so the
 * array is in value order.  Merging adds the counts of equal keys, so a
 * sketch of a union equals the union of the sketches exactly: buckets,
 * dimensions and ranges roll up without loss.
 *
 * Bounded: at most MA_SKETCH_MAX_BINS bins.  With alpha = 1% a bin spans a
 * factor of 1.0202, so 4096 bins cover a ratio of 10^35 between the
 * smallest and largest value; beyond that the lowest bins are collapsed
 * into their neighbour (DDSketch's collapsing lowest store): the high
 * quantiles, which latency SLAs read, keep their guarantee.
 *
 * The serialised form (a bytea's payload) is: uint8 version, int64 count,
 * float8 min, float8 max, int32 nbins, then nbins (int32 key, int64 count),
 * native byte order (a sketch never leaves the cluster that made it).
 */
#include "postgres.h"

#include <math.h>

#include "sketch.h"

#define SKETCH_VERSION	1
#define MIN_INDEXABLE	1e-300
/* |bin index| stays below this for every finite double (log(1.8e308)/0.0198 < 36000) */
#define KEY_OFFSET		40000

static double
sketch_gamma(void)
{
	return (1.0 + MA_SKETCH_ALPHA) / (1.0 - MA_SKETCH_ALPHA);
}

/* The key of value x (see the file's header). */
static int32
value_key(double x)
{
	double		a = fabs(x);
	int32		i;

	if (a < MIN_INDEXABLE)
		return 0;
	i = (int32) ceil(log(a) / log(sketch_gamma()));
	return x > 0 ? KEY_OFFSET + i : -(KEY_OFFSET + i);
}

/* The value bin key stands for. */
static double
key_value(int32 key)
{
	double		g = sketch_gamma();
	int32		i;
	double		v;

	if (key == 0)
		return 0.0;
	i = (key > 0 ? key : -key) - KEY_OFFSET;
	v = 2.0 * pow(g, i) / (g + 1.0);
	return key > 0 ? v : -v;
}

MaSketch *
ma_sketch_create(void)
{
	MaSketch   *s = palloc0(sizeof(MaSketch));

	s->capacity = 64;
	s->bins = palloc(sizeof(MaSketchBin) * s->capacity);
	return s;
}

/* Index of the first bin whose key is >= key. */
static int
find_bin(const MaSketch *s, int32 key)
{
	int			lo = 0;
	int			hi = s->nbins;

	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (s->bins[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Adds count to the bin of key, making it when missing, keeping the bound. */
static void
add_to_bin(MaSketch *s, int32 key, int64 count)
{
	int			pos = find_bin(s, key);

	if (pos < s->nbins && s->bins[pos].key == key)
	{
		s->bins[pos].count += count;
		return;
	}
	if (s->nbins == MA_SKETCH_MAX_BINS)
	{
		/* collapse the lowest bin into the next one (or into the new one) */
		if (pos == 0)
		{
			s->bins[0].count += count;
			return;
		}
		s->bins[1].count += s->bins[0].count;
		memmove(&s->bins[0], &s->bins[1], sizeof(MaSketchBin) * (s->nbins - 1));
		s->nbins--;
		pos--;
	}
	if (s->nbins == s->capacity)
	{
		s->capacity = Min(s->capacity * 2, MA_SKETCH_MAX_BINS);
		s->bins = repalloc(s->bins, sizeof(MaSketchBin) * s->capacity);
	}
	memmove(&s->bins[pos + 1], &s->bins[pos], sizeof(MaSketchBin) * (s->nbins - pos));
	s->bins[pos].key = key;
	s->bins[pos].count = count;
	s->nbins++;
}

/* Adds one finite value (the caller refuses NaN and infinities). */
void
ma_sketch_add(MaSketch *s, double value)
{
	if (s->count == 0 || value < s->min)
		s->min = value;
	if (s->count == 0 || value > s->max)
		s->max = value;
	s->count++;
	add_to_bin(s, value_key(value), 1);
}

/* Adds every value of from into into. */
void
ma_sketch_merge(MaSketch *into, const MaSketch *from)
{
	if (from->count == 0)
		return;
	if (into->count == 0 || from->min < into->min)
		into->min = from->min;
	if (into->count == 0 || from->max > into->max)
		into->max = from->max;
	into->count += from->count;
	for (int i = 0; i < from->nbins; i++)
		add_to_bin(into, from->bins[i].key, from->bins[i].count);
}

/*
 * The q-quantile (0 <= q <= 1) as percentile_disc defines it: the value of
 * rank ceil(q n) (1-based, at least 1), within alpha of that value; clamped
 * to the exact min and max.  NaN for an empty sketch.
 */
double
ma_sketch_quantile(const MaSketch *s, double q)
{
	int64		rank;
	int64		seen = 0;

	if (s->count == 0)
		return NAN;
	rank = (int64) ceil(q * (double) s->count);
	if (rank < 1)
		rank = 1;
	if (rank > s->count)
		rank = s->count;
	if (rank == 1)
		return s->min;
	if (rank == s->count)
		return s->max;
	for (int i = 0; i < s->nbins; i++)
	{
		seen += s->bins[i].count;
		if (seen >= rank)
		{
			double		v = key_value(s->bins[i].key);

			return Max(s->min, Min(s->max, v));
		}
	}
	return s->max;
}

Size
ma_sketch_serialized_size(const MaSketch *s)
{
	return 1 + sizeof(int64) + 2 * sizeof(double) + sizeof(int32) +
		(Size) s->nbins * (sizeof(int32) + sizeof(int64));
}

void
ma_sketch_serialize(const MaSketch *s, char *out)
{
	int32		n = s->nbins;

	*out++ = SKETCH_VERSION;
	memcpy(out, &s->count, sizeof(int64));
	out += sizeof(int64);
	memcpy(out, &s->min, sizeof(double));
	out += sizeof(double);
	memcpy(out, &s->max, sizeof(double));
	out += sizeof(double);
	memcpy(out, &n, sizeof(int32));
	out += sizeof(int32);
	for (int i = 0; i < n; i++)
	{
		memcpy(out, &s->bins[i].key, sizeof(int32));
		out += sizeof(int32);
		memcpy(out, &s->bins[i].count, sizeof(int64));
		out += sizeof(int64);
	}
}

/*
 * Reads a serialised sketch; an input that is not one (wrong version,
 * length, order or counts) is an error, since a bytea may come from anyone.
 */
MaSketch *
ma_sketch_deserialize(const char *data, Size len)
{
	MaSketch   *s = ma_sketch_create();
	Size		head = 1 + sizeof(int64) + 2 * sizeof(double) + sizeof(int32);
	int32		n;
	int64		total = 0;

	if (len < head || data[0] != SKETCH_VERSION)
		goto bad;
	memcpy(&s->count, data + 1, sizeof(int64));
	memcpy(&s->min, data + 1 + sizeof(int64), sizeof(double));
	memcpy(&s->max, data + 1 + sizeof(int64) + sizeof(double), sizeof(double));
	memcpy(&n, data + 1 + sizeof(int64) + 2 * sizeof(double), sizeof(int32));
	if (n < 0 || n > MA_SKETCH_MAX_BINS ||
		len != head + (Size) n * (sizeof(int32) + sizeof(int64)))
		goto bad;
	if (n > s->capacity)
	{
		s->capacity = n;
		s->bins = repalloc(s->bins, sizeof(MaSketchBin) * n);
	}
	data += head;
	for (int i = 0; i < n; i++)
	{
		memcpy(&s->bins[i].key, data, sizeof(int32));
		memcpy(&s->bins[i].count, data + sizeof(int32), sizeof(int64));
		data += sizeof(int32) + sizeof(int64);
		if (s->bins[i].count <= 0 || (i > 0 && s->bins[i].key <= s->bins[i - 1].key))
			goto bad;
		total += s->bins[i].count;
	}
	s->nbins = n;
	if (total != s->count || (n > 0 && !(s->min <= s->max)))
		goto bad;
	return s;

bad:
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("invalid metric_anomaly sketch"),
			 errdetail("The value is not a sketch made by metric_anomaly.sketch() or metric_anomaly.sketch_union().")));
	return NULL;				/* keep compiler quiet */
}
