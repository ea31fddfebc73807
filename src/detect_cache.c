/*
 * detect_cache.c
 *		The rows detection holds per series between passes, in backend
 *		memory: pure data structure, no SPI (what the rows mean and when they
 *		may be used: detect_cache.h, detect_cache_sql.c, evaluate.c).
 *
 * A hash table by series name, in a memory context of its own, with the
 * entries on a list in the order passes last used them.  The limit counts
 * the rows' arrays (MA_DCACHE_ROW_BYTES a row, at their allocated size: a
 * power of two, as the allocator rounds them anyway) and
 * MA_DCACHE_ENTRY_BYTES an entry.  During a pass an entry is created
 * only while the total is under the limit (entries a pass uses are never
 * freed under it: the pass's cursor was told what they hold); at the end of
 * a pass the entries used longest ago are freed until the total is at most
 * nine tenths of the limit, so a new series finds room next pass.
 */
#include "postgres.h"

#include "port/pg_bitutils.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "detect_cache.h"
#include "pg_compat.h"

static MemoryContext cache_cxt = NULL;
static HTAB *cache = NULL;
static dlist_head lru = DLIST_STATIC_INIT(lru);
static Size total = 0;
static Size limit = 0;
static uint64 pass_no = 0;

/* The cache holds something (or could, in a pass). */
bool
ma_dcache_active(void)
{
	return cache != NULL;
}

/* Forgets everything. */
void
ma_dcache_reset(void)
{
	if (cache_cxt != NULL)
		MemoryContextDelete(cache_cxt);
	cache_cxt = NULL;
	cache = NULL;
	dlist_init(&lru);
	total = 0;
}

static void
ensure_table(void)
{
	HASHCTL		ctl;

	if (cache != NULL)
		return;
	cache_cxt = AllocSetContextCreate(TopMemoryContext,
									  "metric_anomaly detect cache",
									  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = MA_DCACHE_KEY_LEN;
	ctl.entrysize = sizeof(MaDcacheEntry);
	ctl.hcxt = cache_cxt;
	cache = hash_create("metric_anomaly detect cache", 1024, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	dlist_init(&lru);
	total = 0;
}

static void
rows_free(MaDcacheRows *r)
{
	if (r->ts)
		pfree(r->ts);
	if (r->vals)
		pfree(r->vals);
	total -= (Size) r->cap * MA_DCACHE_ROW_BYTES;
	memset(r, 0, sizeof(*r));
}

/* Makes room for n rows (the old rows are not kept). */
static void
rows_reserve(MaDcacheRows *r, int n)
{
	if (r->cap >= n && r->cap <= 2 * n + 16)
	{
		r->n = 0;
		return;
	}
	rows_free(r);
	/* what the allocator hands out anyway (chunks are powers of two) */
	r->cap = (int) pg_nextpower2_32((uint32) Max(n, 8));
	r->ts = MemoryContextAlloc(cache_cxt, sizeof(TimestampTz) * r->cap);
	r->vals = MemoryContextAlloc(cache_cxt, sizeof(double) * r->cap);
	total += (Size) r->cap * MA_DCACHE_ROW_BYTES;
	r->n = 0;
}

static void
entry_free(MaDcacheEntry *e)
{
	bool		found;

	rows_free(&e->window);
	for (int i = 0; i < MA_DCACHE_SLOTS; i++)
		rows_free(&e->season[i]);
	dlist_delete(&e->lru);
	total -= MA_DCACHE_ENTRY_BYTES;
	hash_search(cache, e->key, HASH_REMOVE, &found);
}

/* Starts a pass that may hold up to limit_bytes. */
void
ma_dcache_begin_pass(Size limit_bytes)
{
	limit = limit_bytes;
	pass_no++;
	ensure_table();
}

/* Frees the entries used longest ago down to nine tenths of the limit. */
void
ma_dcache_end_pass(void)
{
	if (cache == NULL)
		return;
	while (total > limit - limit / 10 && !dlist_is_empty(&lru))
		entry_free(dlist_tail_element(MaDcacheEntry, lru, &lru));
}

static bool
key_fits(const char *name)
{
	return strlen(name) < MA_DCACHE_KEY_LEN;
}

/* The entry of a series, or NULL; marks it used by this pass. */
MaDcacheEntry *
ma_dcache_lookup(const char *name)
{
	MaDcacheEntry *e;

	if (cache == NULL || !key_fits(name))
		return NULL;
	e = hash_search(cache, name, HASH_FIND, NULL);
	if (e != NULL)
	{
		dlist_move_head(&lru, &e->lru);
		e->pass = pass_no;
	}
	return e;
}

/* The entry of a series, or NULL, without marking it used. */
const MaDcacheEntry *
ma_dcache_peek(const char *name)
{
	if (cache == NULL || !key_fits(name))
		return NULL;
	return hash_search(cache, name, HASH_FIND, NULL);
}

/*
 * The entry of a series to store into, created empty (nothing held) if
 * there is none and room for one; NULL when there is no room.
 */
MaDcacheEntry *
ma_dcache_open(const char *name)
{
	MaDcacheEntry *e;
	bool		found;

	if (cache == NULL || !key_fits(name))
		return NULL;
	e = hash_search(cache, name, HASH_FIND, NULL);
	if (e == NULL)
	{
		if (total + MA_DCACHE_ENTRY_BYTES > limit)
			return NULL;
		e = hash_search(cache, name, HASH_ENTER, &found);
		memset((char *) e + MA_DCACHE_KEY_LEN, 0,
			   sizeof(MaDcacheEntry) - MA_DCACHE_KEY_LEN);
		dlist_push_head(&lru, &e->lru);
		total += MA_DCACHE_ENTRY_BYTES;
	}
	else
		dlist_move_head(&lru, &e->lru);
	e->pass = pass_no;
	return e;
}

void
ma_dcache_remove(const char *name)
{
	MaDcacheEntry *e;

	if (cache == NULL || !key_fits(name))
		return;
	e = hash_search(cache, name, HASH_FIND, NULL);
	if (e != NULL)
		entry_free(e);
}

/*
 * Holds the rows of ts/vals[0..n-1] (time order; every row of the series
 * from `from` to `until`, and maybe some before) from `from` on.
 */
void
ma_dcache_set_window(MaDcacheEntry *e, const TimestampTz *ts,
					 const double *vals, int n,
					 TimestampTz from, TimestampTz until)
{
	int			start = 0;

	while (start < n && ts[start] < from)
		start++;
	/* ts/vals are never the entry's own arrays, which this may free */
	Assert(ts != e->window.ts);
	rows_reserve(&e->window, n - start);
	memcpy(e->window.ts, ts + start, sizeof(TimestampTz) * (n - start));
	memcpy(e->window.vals, vals + start, sizeof(double) * (n - start));
	e->window.n = n - start;
	e->wfrom = from;
	e->wuntil = until;
}

/* A slot's season: its period in seconds and how many seasons back. */
static int64
slot_offset(int slot)
{
	int			weekly = slot >= MA_SEASONS_BACK;
	int			k = weekly ? slot - MA_SEASONS_BACK + 1 : slot + 1;

	return (int64) k * (weekly ? MA_WEEK_S : MA_DAY_S) * USECS_PER_SEC;
}

static bool
slot_held(int periods, int slot)
{
	return (periods & (slot >= MA_SEASONS_BACK ? MA_DCACHE_WEEKLY : MA_DCACHE_DAILY)) != 0;
}

/*
 * Holds, for each slot of periods, the rows of ts/vals[0..n-1] (time
 * order, repeats allowed; every row of the series in each slot's range
 * (s0, s1] moved back by its offset, and maybe others) inside its range.
 */
void
ma_dcache_set_season(MaDcacheEntry *e, int periods, TimestampTz s0,
					 TimestampTz s1, const TimestampTz *ts,
					 const double *vals, int n)
{
	for (int slot = 0; slot < MA_DCACHE_SLOTS; slot++)
	{
		MaDcacheRows *r = &e->season[slot];
		TimestampTz lo;
		TimestampTz hi;
		int			first = 0;
		int			count = 0;

		if (!slot_held(periods, slot))
		{
			rows_free(r);
			continue;
		}
		lo = s0 - slot_offset(slot);
		hi = s1 - slot_offset(slot);
		while (first < n && ts[first] <= lo)
			first++;
		for (int i = first; i < n && ts[i] <= hi; i++)
			count++;
		rows_reserve(r, count);
		for (int i = first; i < n && ts[i] <= hi; i++)
		{
			/* ranges that overlap give a row twice: keep it once */
			if (r->n > 0 && r->ts[r->n - 1] == ts[i])
				continue;
			r->ts[r->n] = ts[i];
			r->vals[r->n] = vals[i];
			r->n++;
		}
	}
	e->periods = periods;
	e->s0 = s0;
	e->s1 = s1;
}

/* Lets go of what lies at or before s0 in each slot's range. */
void
ma_dcache_trim_season(MaDcacheEntry *e, TimestampTz s0)
{
	if (s0 <= e->s0)
		return;
	for (int slot = 0; slot < MA_DCACHE_SLOTS; slot++)
	{
		MaDcacheRows *r = &e->season[slot];
		TimestampTz lo = s0 - slot_offset(slot);
		int			drop = 0;

		while (drop < r->n && r->ts[drop] <= lo)
			drop++;
		if (drop > 0)
		{
			memmove(r->ts, r->ts + drop, sizeof(TimestampTz) * (r->n - drop));
			memmove(r->vals, r->vals + drop, sizeof(double) * (r->n - drop));
			r->n -= drop;
		}
	}
	e->s0 = s0;
}

/* Rows held in all slots (an upper bound of ma_dcache_season_rows()). */
int
ma_dcache_season_count(const MaDcacheEntry *e)
{
	int			n = 0;

	for (int slot = 0; slot < MA_DCACHE_SLOTS; slot++)
		n += e->season[slot].n;
	return n;
}

/*
 * Writes the rows of all slots to ts/vals (room for
 * ma_dcache_season_count()) in time order, each once; returns how many.
 * The slots furthest back come first, so they are in order unless ranges
 * overlap (a range wider than a day), which a sort puts right.
 */
int
ma_dcache_season_rows(const MaDcacheEntry *e, TimestampTz *ts, double *vals)
{
	static const int order[MA_DCACHE_SLOTS] = {5, 4, 3, 2, 1, 0};
	int			n = 0;

	StaticAssertStmt(MA_DCACHE_SLOTS == 6, "slot order assumes three seasons back");
	for (int o = 0; o < MA_DCACHE_SLOTS; o++)
	{
		const MaDcacheRows *r = &e->season[order[o]];

		if (r->n == 0)
			continue;
		memcpy(ts + n, r->ts, sizeof(TimestampTz) * r->n);
		memcpy(vals + n, r->vals, sizeof(double) * r->n);
		n += r->n;
	}
	return ma_season_sort(ts, vals, n);
}

int
ma_dcache_entries(void)
{
	return cache ? (int) hash_get_num_entries(cache) : 0;
}

Size
ma_dcache_bytes(void)
{
	return total;
}
