/*
 * detect_cache.h
 *		Detection's running state per series: the rows of its window and of
 *		its seasonal ranges a pass read, kept for the next pass (pure data
 *		structure, no SPI: detect_cache.c; when it may be used: the glue in
 *		detect_cache_sql.c).
 */
#ifndef MA_DETECT_CACHE_H
#define MA_DETECT_CACHE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/ilist.h"

#include "detect.h"

/* Names this long or longer are not cached (read afresh each pass). */
#define MA_DCACHE_KEY_LEN	200

/* seasonal ranges held: k = 1..MA_SEASONS_BACK seasons back, daily and weekly */
#define MA_DCACHE_SLOTS		(2 * MA_SEASONS_BACK)
#define MA_DCACHE_DAILY		1	/* period bits */
#define MA_DCACHE_WEEKLY	2

/* Rows of one series in time order. */
typedef struct MaDcacheRows
{
	int			n;
	int			cap;
	TimestampTz *ts;
	double	   *vals;
} MaDcacheRows;

/*
 * What is held of one series.  window holds every row of the series with
 * wfrom <= ts <= wuntil; when periods is not 0, season[slot] holds every
 * row with s0 - k * period < ts <= s1 - k * period, for the periods whose
 * bits are set (slot = (weekly ? MA_SEASONS_BACK : 0) + k - 1); first is
 * the series' first minute (0: not known).  "Every row" as of the snapshot
 * of the pass that stored it, with every later change either made by the
 * pipeline (which marks the rows it changes needs_eval, and a dirty minute
 * inside what is held makes the next pass read afresh) or flushing the
 * whole cache (detect_cache_sql.c).
 */
typedef struct MaDcacheEntry
{
	char		key[MA_DCACHE_KEY_LEN]; /* the series name (hash key) */
	dlist_node	lru;
	TimestampTz first;
	TimestampTz wfrom;
	TimestampTz wuntil;
	MaDcacheRows window;
	int			periods;
	TimestampTz s0;
	TimestampTz s1;
	MaDcacheRows season[MA_DCACHE_SLOTS];
	Size		bytes;			/* held in arrays, counted in the limit */
	uint64		pass;			/* the last pass that used or stored it */
} MaDcacheEntry;

/* Per entry beyond its rows: the entry and the hash table's share of it. */
#define MA_DCACHE_ENTRY_BYTES	(sizeof(MaDcacheEntry) + 64)
#define MA_DCACHE_ROW_BYTES		(sizeof(TimestampTz) + sizeof(double))

extern bool ma_dcache_active(void);
extern void ma_dcache_reset(void);
extern void ma_dcache_begin_pass(Size limit);
extern void ma_dcache_end_pass(void);
extern MaDcacheEntry *ma_dcache_lookup(const char *name);
extern const MaDcacheEntry *ma_dcache_peek(const char *name);
extern MaDcacheEntry *ma_dcache_open(const char *name);
extern void ma_dcache_remove(const char *name);
extern void ma_dcache_set_window(MaDcacheEntry *e, const TimestampTz *ts,
								 const double *vals, int n,
								 TimestampTz from, TimestampTz until);
extern void ma_dcache_set_season(MaDcacheEntry *e, int periods,
								 TimestampTz s0, TimestampTz s1,
								 const TimestampTz *ts, const double *vals, int n);
extern void ma_dcache_trim_season(MaDcacheEntry *e, TimestampTz s0);
extern int	ma_dcache_season_rows(const MaDcacheEntry *e, TimestampTz *ts,
								  double *vals);
extern int	ma_dcache_season_count(const MaDcacheEntry *e);
extern int	ma_dcache_entries(void);
extern Size ma_dcache_bytes(void);

#endif							/* MA_DETECT_CACHE_H */
