/*
 * pg_stubs.h
 *		The few server functions the pure C files call (palloc and friends,
 *		ereport, pg_qsort), for the libFuzzer targets, which run outside the
 *		server.  Allocations are remembered and freed after each input, and
 *		ereport(ERROR) jumps back to the target through fuzz_on_error.
 */
#ifndef FUZZ_PG_STUBS_H
#define FUZZ_PG_STUBS_H

#include <setjmp.h>

extern sigjmp_buf fuzz_on_error;

/* Frees everything allocated since the last call. */
extern void fuzz_free_all(void);

#endif
