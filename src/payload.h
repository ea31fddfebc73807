/*
 * payload.h
 *		Reading event payloads as the metric definitions do: values at
 *		paths, numbers, dimension values.
 *
 * Pure computation, no SPI: the fold (metric_fold.c) calls these once per
 * event and definition, and payload_dimensions() in SQL shares them.
 */
#ifndef MA_PAYLOAD_H
#define MA_PAYLOAD_H

#include "postgres.h"

#include "utils/jsonb.h"

/* A dimension value is cut to this many characters. */
#define MA_MAX_DIMENSION_CHARS	100

/* What a definition's value path gives for an event. */
typedef enum MaValueStatus
{
	MA_VALUE_OK,
	MA_VALUE_MISSING,			/* no such path, or JSON null */
	MA_VALUE_NON_NUMERIC,		/* a string that is no number, or out of range */
	MA_VALUE_WRONG_TYPE			/* an object, array or boolean */
} MaValueStatus;

/* A path of object keys or array indexes (as the #> operator reads it). */
typedef struct MaPath
{
	int			n;
	char	  **elem;			/* NUL-terminated */
	int		   *len;
} MaPath;

extern JsonbValue *ma_payload_get(Jsonb *payload, const MaPath *path, JsonbValue *buf);
extern MaValueStatus ma_payload_number(const JsonbValue *v, double *out);
extern char *ma_payload_text(const JsonbValue *v, int *len);
extern int	ma_dimension_clip(const char *s, int len);
extern Jsonb *ma_dimensions_jsonb(const MaPath *keys, const char *const *vals,
								  const int *lens);

#endif							/* MA_PAYLOAD_H */
