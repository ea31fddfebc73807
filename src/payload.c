/*
 * payload.c
 *		payload_dimensions(payload jsonb, keys text[]): the dimension values
 *		of an event for a metric definition, as the fold keys its series.
 *
 * {key: value as text, ...} for every key, in the form ->> gives (a string
 * unquoted, a number or boolean as written, an object or array as JSON),
 * cut to MAX_DIMENSION_CHARS characters; a key the payload lacks (or a NULL
 * payload) gives JSON null.  In C because the fold calls it once per event
 * and definition: the same in SQL (jsonb_object_agg over unnest(keys)) was
 * a subplan per row.  No SPI.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "pg_compat.h"

#define MAX_DIMENSION_CHARS	100

PG_FUNCTION_INFO_V1(metric_anomaly_payload_dimensions);

/* The text ->> would give for v, cut to MAX_DIMENSION_CHARS characters. */
static char *
value_text(JsonbValue *v, int *len)
{
	char	   *s;
	int			n;

	switch (v->type)
	{
		case jbvString:
			s = v->val.string.val;
			n = v->val.string.len;
			break;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			n = strlen(s);
			break;
		case jbvBool:
			s = v->val.boolean ? "true" : "false";
			n = strlen(s);
			break;
		default:				/* jbvBinary: an object or array */
			s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			n = strlen(s);
			break;
	}
	*len = pg_mbcharcliplen(s, n, MAX_DIMENSION_CHARS);
	return s;
}

Datum
metric_anomaly_payload_dimensions(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload = PG_ARGISNULL(0) ? NULL : PG_GETARG_JSONB_P(0);
	ArrayType  *keys;
	Datum	   *kd;
	bool	   *kn;
	int			nkeys;
	JsonbInState state = {0};

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	keys = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(keys, TEXTOID, -1, false, TYPALIGN_INT, &kd, &kn, &nkeys);

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < nkeys; i++)
	{
		JsonbValue	k;
		JsonbValue	v;
		JsonbValue	found;
		JsonbValue *got = NULL;
		text	   *kt;

		if (kn[i])
			continue;
		kt = DatumGetTextPP(kd[i]);
		k.type = jbvString;
		k.val.string.val = VARDATA_ANY(kt);
		k.val.string.len = VARSIZE_ANY_EXHDR(kt);
		if (payload != NULL && JB_ROOT_IS_OBJECT(payload))
			got = getKeyJsonValueFromContainer(&payload->root, k.val.string.val,
											   k.val.string.len, &found);
		if (got == NULL || got->type == jbvNull)
			v.type = jbvNull;
		else
		{
			int			len;

			v.type = jbvString;
			v.val.string.val = value_text(got, &len);
			v.val.string.len = len;
		}
		pushJsonbValue(&state, WJB_KEY, &k);
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(state.result));
}
