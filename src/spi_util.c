/*
 * spi_util.c
 *		Prepared, kept SPI plans with checked return codes.
 *
 * Every query the extension runs is parameterised, schema-qualified and
 * prepared once per backend (SPI_prepare + SPI_keepplan); the plan cache
 * re-plans them when the tables change.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "pg_compat.h"
#include "spi_util.h"

static SPIPlanPtr
statement_plan(MaStatement *stmt)
{
	if (stmt->plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(stmt->sql, stmt->nargs, stmt->argtypes,
												stmt->cursor_options);

		if (plan == NULL)
			elog(ERROR, "metric_anomaly: SPI_prepare failed (%s): %s",
				 SPI_result_code_string(SPI_result), stmt->sql);
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "metric_anomaly: SPI_keepplan failed");
		stmt->plan = plan;
	}
	return stmt->plan;
}

/*
 * Runs a statement and returns the number of rows it processed; any return
 * code other than expected_rc is an internal error.
 */
uint64
ma_execute(MaStatement *stmt, Datum *values, const char *nulls,
		   int expected_rc, long count)
{
	int			rc;

	rc = SPI_execute_plan(statement_plan(stmt), values, nulls, false, count);
	if (rc != expected_rc)
		elog(ERROR, "metric_anomaly: unexpected SPI result %s for: %s",
			 SPI_result_code_string(rc), stmt->sql);
	return SPI_processed;
}

/*
 * Runs a statement that returns rows into dest instead of a tuple table, so
 * large results are consumed as they are produced (on 13 after the whole
 * result is read, see pg_compat.h); returns the row count.
 */
uint64
ma_execute_into(MaStatement *stmt, Datum *values, DestReceiver *dest,
				int expected_rc)
{
	SPIExecuteOptions options;
	ParamListInfo params = makeParamList(stmt->nargs);
	int			rc;

	for (int i = 0; i < stmt->nargs; i++)
	{
		params->params[i].value = values[i];
		params->params[i].isnull = false;
		params->params[i].pflags = PARAM_FLAG_CONST;
		params->params[i].ptype = stmt->argtypes[i];
	}
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.dest = dest;
	rc = SPI_execute_plan_extended(statement_plan(stmt), &options);
	if (rc != expected_rc)
		elog(ERROR, "metric_anomaly: unexpected SPI result %s for: %s",
			 SPI_result_code_string(rc), stmt->sql);
	return SPI_processed;
}

static void
receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
receiver_noop(DestReceiver *self)
{
}

/*
 * Makes r a receiver that hands each row to receive and does nothing at
 * start, end or destruction (the caller owns r, usually on its stack).
 */
void
ma_receiver_init(DestReceiver *r,
				 bool (*receive) (TupleTableSlot *slot, DestReceiver *self))
{
	memset(r, 0, sizeof(*r));
	r->receiveSlot = receive;
	r->rStartup = receiver_startup;
	r->rShutdown = receiver_noop;
	r->rDestroy = receiver_noop;
	r->mydest = DestNone;
}

/* Opens a read-only cursor over a statement. */
Portal
ma_open_cursor(MaStatement *stmt, Datum *values, const char *nulls)
{
	Portal		portal;

	portal = SPI_cursor_open(NULL, statement_plan(stmt), values, nulls, false);
	if (portal == NULL)
		elog(ERROR, "metric_anomaly: SPI_cursor_open failed (%s)",
			 SPI_result_code_string(SPI_result));
	return portal;
}

void
ma_spi_connect(void)
{
	int			rc = SPI_connect();

	if (rc != SPI_OK_CONNECT)
		elog(ERROR, "metric_anomaly: SPI_connect failed: %s",
			 SPI_result_code_string(rc));
}

void
ma_spi_finish(void)
{
	int			rc = SPI_finish();

	if (rc != SPI_OK_FINISH)
		elog(ERROR, "metric_anomaly: SPI_finish failed: %s",
			 SPI_result_code_string(rc));
}
