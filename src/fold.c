/*
 * fold.c
 *		In-memory folding of events into (metric, minute) counts.
 *
 * A simplehash table keyed by the event type's bytes and the UTC minute.
 * Names are copied into the table's memory context on first sight, so the
 * caller may pass pointers into tuples it is about to free.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/memutils.h"

#include "fold.h"

static inline uint32
fold_hash_key(const MaFoldKey *key)
{
	uint32		h = hash_bytes((const unsigned char *) key->name, key->len);

	return hash_combine(h, hash_bytes_uint32((uint32) key->minute) ^
						(uint32) (key->minute >> 32));
}

static inline bool
fold_key_equal(const MaFoldKey *a, const MaFoldKey *b)
{
	return a->minute == b->minute && a->len == b->len &&
		memcmp(a->name, b->name, a->len) == 0;
}

#define SH_PREFIX			foldtab
#define SH_ELEMENT_TYPE		MaFoldEntry
#define SH_KEY_TYPE			MaFoldKey
#define SH_KEY				key
#define SH_HASH_KEY(tb, k)	fold_hash_key(&(k))
#define SH_EQUAL(tb, a, b)	fold_key_equal(&(a), &(b))
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

struct MaFold
{
	MemoryContext cxt;
	foldtab_hash *table;
};

/*
 * Returns the start of the UTC minute that contains ts (floor, also for
 * timestamps before 2000).
 */
TimestampTz
ma_minute_floor(TimestampTz ts)
{
	TimestampTz m = ts - ts % USECS_PER_MINUTE;

	if (m > ts)
		m -= USECS_PER_MINUTE;
	return m;
}

/*
 * True when an event dated ts can be counted: within MA_FOLD_MARGIN of
 * neither end of the timestamp range (4714-11-24 BC to 294276-12-31 AD).
 * Any other event is quarantined by the caller.
 */
bool
ma_fold_in_range(TimestampTz ts)
{
	return ts >= MIN_TIMESTAMP + MA_FOLD_MARGIN &&
		ts < END_TIMESTAMP - MA_FOLD_MARGIN;
}

/* Creates an empty fold whose memory lives in cxt. */
MaFold *
ma_fold_create(MemoryContext cxt, uint32 expected)
{
	MaFold	   *fold = MemoryContextAlloc(cxt, sizeof(MaFold));

	fold->cxt = cxt;
	fold->table = foldtab_create(cxt, Max(expected, 16), NULL);
	return fold;
}

/* Counts one event of type name (len bytes) at ts. */
void
ma_fold_add(MaFold *fold, const char *name, int len, TimestampTz ts)
{
	MaFoldKey	key;
	MaFoldEntry *entry;
	bool		found;

	key.name = name;
	key.len = len;
	key.minute = ma_minute_floor(ts);

	entry = foldtab_insert(fold->table, key, &found);
	if (!found)
	{
		char	   *copy = MemoryContextAlloc(fold->cxt, len + 1);

		memcpy(copy, name, len);
		copy[len] = '\0';
		entry->key.name = copy;
		entry->count = 0;
	}
	entry->count++;
}

uint32
ma_fold_count(MaFold *fold)
{
	return fold->table->members;
}

/*
 * Returns the entries as an array (in the fold's context), in no particular
 * order; their names are NUL-terminated.
 */
MaFoldEntry **
ma_fold_entries(MaFold *fold)
{
	MaFoldEntry **out;
	foldtab_iterator it;
	MaFoldEntry *entry;
	uint32		i = 0;

	out = MemoryContextAlloc(fold->cxt,
							 sizeof(MaFoldEntry *) * Max(fold->table->members, 1));
	foldtab_start_iterate(fold->table, &it);
	while ((entry = foldtab_iterate(fold->table, &it)) != NULL)
		out[i++] = entry;
	return out;
}
