/*
 * extension.c
 *		Whether the installed SQL objects are those this library was built for.
 *
 * A new library is installed (and the server restarted) before anyone runs
 * ALTER EXTENSION metric_anomaly UPDATE in each database.  Until then the
 * database holds the old version's tables and functions, and a worker of the
 * new library would run statements against columns that do not exist yet,
 * failing on every pass (or, worse, half-succeeding).  So both workers call
 * ma_extension_is_current() where they check that the extension exists and
 * wait, saying once in the log what to do, while the installed version is
 * not the library's.
 *
 * The version is read from pg_extension directly (no SPI), so the check
 * costs one index lookup per pass and works inside any transaction.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "extension.h"
#include "metric_anomaly.h"

/*
 * The installed version last reported as not current by this process, so
 * that a version is said once, however many passes wait for it (and said
 * again if it changes to another version that is still not current).
 */
static char *reported_version = NULL;

/*
 * extversion of the installed metric_anomaly in the current database, in
 * the current memory context, or NULL when it is not installed.  Must be
 * called inside a transaction.
 */
static char *
installed_version(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(MA_EXTENSION_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * True when the installed extension's version is MA_LIBRARY_VERSION.  When
 * it is another version, says so once in the log (with what to run) and
 * returns false; the caller waits and asks again later.  When the extension
 * is not installed, returns false silently: the callers report that case
 * themselves.  Must be called inside a transaction.
 */
bool
ma_extension_is_current(void)
{
	char	   *version = installed_version();

	if (version == NULL)
		return false;
	if (strcmp(version, MA_LIBRARY_VERSION) == 0)
	{
		if (reported_version != NULL)
		{
			pfree(reported_version);
			reported_version = NULL;
		}
		return true;
	}
	if (reported_version == NULL || strcmp(reported_version, version) != 0)
	{
		ereport(LOG,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("metric_anomaly: extension version %s is installed in database \"%s\" but the library is %s; waiting for ALTER EXTENSION metric_anomaly UPDATE",
						version, get_database_name(MyDatabaseId), MA_LIBRARY_VERSION),
				 errdetail("The library does not run against the SQL objects of another version."),
				 errhint("Run ALTER EXTENSION metric_anomaly UPDATE in that database, or install the library of version %s.",
						 version)));
		if (reported_version != NULL)
			pfree(reported_version);
		reported_version = MemoryContextStrdup(TopMemoryContext, version);
	}
	return false;
}

/*
 * For SQL functions that run a pass (process_pending()): an error, saying
 * what to run, when the installed version is not the library's.  Without
 * it, a call between a library upgrade and ALTER EXTENSION UPDATE would fail
 * on whatever column the old schema lacks, or write rows the new version
 * reads differently.
 */
void
ma_extension_require_current(void)
{
	char	   *version = installed_version();

	if (version != NULL && strcmp(version, MA_LIBRARY_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension metric_anomaly is installed at version %s but the library is %s",
						version, MA_LIBRARY_VERSION),
				 errhint("Run ALTER EXTENSION metric_anomaly UPDATE, or install the library of version %s.",
						 version)));
}
