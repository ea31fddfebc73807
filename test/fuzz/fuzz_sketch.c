/*
 * fuzz_sketch.c
 *		libFuzzer target for the DDSketch (src/sketch.c): any bytes as a
 *		stored sketch (ma_sketch_deserialize must refuse what it did not
 *		write, with its error, never read out of bounds), and any doubles
 *		added, merged and asked for quantiles.
 *
 * Input: byte 0 picks the mode.  Mode 0 hands the rest to the deserializer.
 * Otherwise the rest is doubles: finite ones are added to sketch A or B by
 * alternation, B is merged into A, and A is checked against the rule's
 * promises: its count is the number added; every quantile lies within
 * [min, max] and is non-decreasing in q; a serialized copy deserializes
 * to the same quantiles.
 *
 * sketch.c is server code (palloc, ereport): pg_stubs.c stands in for the
 * server functions it calls, ereport(ERROR) by a longjmp back here.
 */
#include "postgres.h"

#include <math.h>

#include "pg_stubs.h"
#include "sketch.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const MaSketch *a, int64 added)
{
	double		prev = -INFINITY;
	Size		len;
	char	   *buf;
	MaSketch   *copy;

	if (a->count != added)
		abort();
	if (added == 0)
		return;
	for (int i = 0; i <= 20; i++)
	{
		double		q = ma_sketch_quantile(a, i / 20.0);

		if (!(q >= a->min && q <= a->max) || q < prev)
			abort();
		prev = q;
	}
	len = ma_sketch_serialized_size(a);
	buf = palloc(len);
	ma_sketch_serialize(a, buf);
	copy = ma_sketch_deserialize(buf, len);
	for (int i = 0; i <= 20; i++)
		if (ma_sketch_quantile(copy, i / 20.0) != ma_sketch_quantile(a, i / 20.0))
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (sigsetjmp(fuzz_on_error, 0) == 0)
	{
		if (size >= 1 && data[0] % 2 == 0)
			(void) ma_sketch_deserialize((const char *) data + 1, size - 1);
		else if (size >= 1)
		{
			MaSketch   *a = ma_sketch_create();
			MaSketch   *b = ma_sketch_create();
			int64		added = 0;
			size_t		n = (size - 1) / sizeof(double);

			for (size_t i = 0; i < n; i++)
			{
				double		v;

				memcpy(&v, data + 1 + i * sizeof(double), sizeof(double));
				if (!isfinite(v))
					continue;
				ma_sketch_add(i % 2 ? b : a, v);
				added++;
			}
			ma_sketch_merge(a, b);
			check(a, added);
		}
	}
	fuzz_free_all();
	return 0;
}
