/*
 * order_stat.c
 *		Order statistics of a double array, in place: the k-th smallest,
 *		the median (the recent baseline of detect_robust.c takes four a
 *		point) and percentile_cont's quantile (the heatmap's cells from raw
 *		samples).  Pure computation: no SPI, no catalog access.
 *
 * Selection reorders the array so that v[0..k-1] <= v[k] <= v[k+1..n-1],
 * which the median and the quantile use to find their second value without
 * a second selection.  Expected O(n); a sort costs O(n log n), and at the
 * robust method's 360 points sorting made its fit about three times slower.
 */
#include "postgres.h"

#include <math.h>

#include "order_stat.h"

static int
double_cmp(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/*
 * The k-th smallest of v[0..n) (0-based), v reordered: quickselect with the
 * median of three as pivot, which ends in O(n) on any input but crafted
 * ones; after 2 log2(n) rounds that did not halve the range it sorts what
 * is left, so no input costs more than O(n log n).
 */
double
ma_select_kth(double *v, int n, int k)
{
	int			lo = 0,
				hi = n - 1,
				budget = 2;

	for (int m = n; m > 1; m >>= 1)
		budget += 2;
	while (hi > lo)
	{
		double		a = v[lo],
					b = v[lo + (hi - lo) / 2],
					c = v[hi],
					pivot;
		int			i = lo,
					j = hi;

		if (--budget < 0)
		{
			qsort(v + lo, hi - lo + 1, sizeof(double), double_cmp);
			break;
		}
		pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
		/* Hoare partition: v[lo..j] <= pivot <= v[i..hi] */
		while (i <= j)
		{
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j)
			{
				double		t = v[i];

				v[i++] = v[j];
				v[j--] = t;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			break;				/* v[j+1..i-1] all equal the pivot */
	}
	return v[k];
}

/*
 * The q quantile of v[0..n) (n > 0), v reordered, exactly as
 * percentile_cont(q) computes it: the linear interpolation between the
 * order statistics floor and ceil of q * (n - 1), in the same arithmetic,
 * so both give the same double.  The second is the smallest of the values
 * above the first one's place, which selection left there.  Reordering
 * the samples leaves the state the same set of them, so the final function
 * may run again on it (as a window aggregate's does).
 */
double
ma_quantile_cont(double *v, int n, double q)
{
	double		pos = q * (n - 1);
	int			first = (int) floor(pos),
				second = (int) ceil(pos);
	double		lo = ma_select_kth(v, n, first),
				hi;

	if (second <= first)
		return lo;
	hi = v[second];
	for (int i = second + 1; i < n; i++)
		if (v[i] < hi)
			hi = v[i];
	return lo + (pos - first) * (hi - lo);
}

/* Median of v[0..n-1] (n >= 1); reorders v. */
double
ma_median(double *v, int n)
{
	double		upper = ma_select_kth(v, n, n / 2);
	double		lower = upper;

	if (n % 2 == 0)
	{
		/* the largest of the lower half, which ma_select_kth left before it */
		lower = v[0];
		for (int i = 1; i < n / 2; i++)
			lower = Max(lower, v[i]);
	}
	return (lower + upper) / 2.0;
}
