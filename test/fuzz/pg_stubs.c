/*
 * pg_stubs.c
 *		Stand-ins for the server functions the pure C files call; see
 *		pg_stubs.h.
 */
#include "postgres.h"

#include <stdlib.h>

#include "pg_stubs.h"

sigjmp_buf	fuzz_on_error;
static int	error_level;

/* The allocations of one input. */
#define MAX_ALLOCS 65536
static void *allocs[MAX_ALLOCS];
static int	nallocs;

static void *
remember(void *p)
{
	if (p == NULL || nallocs == MAX_ALLOCS)
		abort();
	allocs[nallocs++] = p;
	return p;
}

void
fuzz_free_all(void)
{
	for (int i = 0; i < nallocs; i++)
		free(allocs[i]);
	nallocs = 0;
}

void *
palloc(Size size)
{
	return remember(malloc(size ? size : 1));
}

void *
palloc0(Size size)
{
	return remember(calloc(1, size ? size : 1));
}

void *
repalloc(void *pointer, Size size)
{
	void	   *p = realloc(pointer, size ? size : 1);

	if (p == NULL)
		abort();
	for (int i = 0; i < nallocs; i++)
		if (allocs[i] == pointer)
			allocs[i] = p;
	return p;
}

void
pfree(void *pointer)
{
	for (int i = 0; i < nallocs; i++)
		if (allocs[i] == pointer)
		{
			allocs[i] = allocs[--nallocs];
			free(pointer);
			return;
		}
	abort();					/* not ours: a double free */
}

void
pg_qsort(void *base, size_t nel, size_t elsize,
		 int (*cmp) (const void *, const void *))
{
	qsort(base, nel, elsize, cmp);
}

bool
errstart_cold(int elevel, const char *domain)
{
	error_level = elevel;
	return true;
}

bool
errstart(int elevel, const char *domain)
{
	return errstart_cold(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	if (error_level >= ERROR)
		siglongjmp(fuzz_on_error, 1);
}

int
errcode(int sqlerrcode)
{
	return 0;
}

int
errmsg(const char *fmt,...)
{
	return 0;
}

int
errdetail(const char *fmt,...)
{
	return 0;
}
