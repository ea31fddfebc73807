/*
 * order_stat.h
 *		Order statistics of a double array, in place (order_stat.c).
 */
#ifndef MA_ORDER_STAT_H
#define MA_ORDER_STAT_H

/* The k-th smallest of v[0..n) (0 <= k < n); reorders v around it. */
extern double ma_select_kth(double *v, int n, int k);

/* The median of v[0..n) (n >= 1): the mean of the middle two for even n. */
extern double ma_median(double *v, int n);

/* The q quantile of v[0..n) (n >= 1), exactly as percentile_cont(q). */
extern double ma_quantile_cont(double *v, int n, double q);

#endif							/* MA_ORDER_STAT_H */
