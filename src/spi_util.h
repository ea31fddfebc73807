/*
 * spi_util.h
 *		Prepared, kept SPI plans with checked return codes.
 */
#ifndef MA_SPI_UTIL_H
#define MA_SPI_UTIL_H

#include "postgres.h"

#include "executor/spi.h"
#include "tcop/dest.h"

/* A statement prepared once per backend and kept across transactions. */
typedef struct MaStatement
{
	const char *sql;
	int			nargs;
	Oid			argtypes[12];
	SPIPlanPtr	plan;
	int			cursor_options; /* for SPI_prepare_cursor(); 0 as SPI_prepare */
} MaStatement;

extern uint64 ma_execute(MaStatement *stmt, Datum *values, const char *nulls,
						 int expected_rc, long count);
extern uint64 ma_execute_into(MaStatement *stmt, Datum *values,
							  DestReceiver *dest, int expected_rc);
extern void ma_receiver_init(DestReceiver *r,
							 bool (*receive) (TupleTableSlot *slot, DestReceiver *self));
extern Portal ma_open_cursor(MaStatement *stmt, Datum *values, const char *nulls);
extern void ma_spi_connect(void);
extern void ma_spi_finish(void);

#endif							/* MA_SPI_UTIL_H */
