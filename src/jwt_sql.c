/*
 * jwt_sql.c
 *		SQL functions over the JWT verifier (jwt.c):
 *		metric_anomaly.jwt_claims(token, secret, verify_exp) and
 *		metric_anomaly.record_event(event_type, payload, token), and the
 *		metric_anomaly.jwt_leeway setting.
 *
 * record_event is SECURITY DEFINER: it reads the secrets of
 * metric_anomaly.jwt_secrets, which only metric_anomaly_admin can read, so
 * an application that may only call record_event can verify tokens without
 * ever seeing a secret.  No error or log line of this file contains a
 * secret or a token (they are credentials); details name only positions,
 * algorithms and times.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "jwt.h"
#include "jwt_sql.h"
#include "pg_compat.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(metric_anomaly_jwt_claims);
PG_FUNCTION_INFO_V1(metric_anomaly_record_event);

/*
 * SQLSTATEs of the failures that have no standard code: implementation-
 * defined subclasses (J..) of class 28, invalid authorization specification.
 */
#define ERRCODE_MA_JWT_EXPIRED			MAKE_SQLSTATE('2','8','J','0','1')
#define ERRCODE_MA_JWT_NOT_YET_VALID	MAKE_SQLSTATE('2','8','J','0','2')

/* Client metadata claim and the dimensions record_event takes from it. */
#define C_META_CLAIM "c_meta"
static const char *const c_meta_fields[] = {"app_v", "os", "os_v", "net", "device"};

/* Longest dimension value kept; longer (or empty) values become "unknown". */
#define MAX_DIMENSION_CHARS 64
#define UNKNOWN_DIMENSION "unknown"

static int	ma_jwt_leeway_s = 60;

void
ma_jwt_define_gucs(void)
{
	DefineCustomIntVariable("metric_anomaly.jwt_leeway",
							"Clock skew tolerated when checking the exp and nbf claims of a JWT.",
							"A token is expired once now >= exp + leeway, and not yet valid while now + leeway < nbf.",
							&ma_jwt_leeway_s,
							60, 0, 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* Seconds since 1970-01-01 00:00 UTC at the start of the current statement. */
static double
statement_unix_time(void)
{
	return (double) GetCurrentStatementStartTimestamp() / USECS_PER_SEC +
		(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;
}

/*
 * Raises the error of a failed step, with jwt->detail as errdetail.  hint,
 * when given, replaces the hint of a bad signature (record_event points at
 * its table of secrets).
 */
static void
report_jwt_error(MaJwtStatus st, const MaJwt *jwt, const char *signature_hint)
{
	int			code;
	const char *msg;
	const char *hint = NULL;

	switch (st)
	{
		case MA_JWT_TOO_LARGE:
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			msg = "JWT is too large";
			hint = "Tokens should carry identity and client metadata, not data.";
			break;
		case MA_JWT_MALFORMED:
			code = ERRCODE_INVALID_TEXT_REPRESENTATION;
			msg = "JWT is malformed";
			hint = "Pass the compact form header.payload.signature, without a \"Bearer \" prefix.";
			break;
		case MA_JWT_BAD_BASE64:
			code = ERRCODE_CHARACTER_NOT_IN_REPERTOIRE;
			msg = "JWT contains invalid base64url";
			hint = "Each part must be base64url (A-Z a-z 0-9 - _) without = padding.";
			break;
		case MA_JWT_BAD_JSON:
			code = ERRCODE_INVALID_JSON_TEXT;
			msg = "JWT contains invalid JSON";
			break;
		case MA_JWT_BAD_CLAIM:
			code = ERRCODE_NON_NUMERIC_SQL_JSON_ITEM;
			msg = "JWT time claim is not a number";
			break;
		case MA_JWT_UNSUPPORTED_ALG:
			code = ERRCODE_FEATURE_NOT_SUPPORTED;
			msg = "JWT algorithm is not supported";
			hint = "Sign tokens with HS256, HS384 or HS512.";
			break;
		case MA_JWT_UNSUPPORTED_HEADER:
			code = ERRCODE_FEATURE_NOT_SUPPORTED;
			msg = "JWT header is not supported";
			break;
		case MA_JWT_BAD_SIGNATURE:
			code = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			msg = "JWT signature does not match";
			hint = signature_hint ? signature_hint :
				"Check that the token was signed with this secret and not changed since.";
			break;
		case MA_JWT_EXPIRED:
			code = ERRCODE_MA_JWT_EXPIRED;
			msg = "JWT has expired";
			hint = "Get a new token from its issuer.";
			break;
		case MA_JWT_NOT_YET_VALID:
			code = ERRCODE_MA_JWT_NOT_YET_VALID;
			msg = "JWT is not yet valid";
			hint = "Check the clocks of the issuer and of the database server.";
			break;
		default:
			elog(ERROR, "metric_anomaly: unexpected JWT status %d", (int) st);
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", msg),
			 jwt->detail[0] ? errdetail("%s", jwt->detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

/*
 * Decodes the token into *jwt (its decoded parts in a palloc'd buffer);
 * raises the error of a token refused before its signature is checked.
 */
static void
decode_or_error(text *token, MaJwt *jwt)
{
	size_t		len = VARSIZE_ANY_EXHDR(token);
	uint8	   *buf = palloc(Min(len, MA_JWT_MAX_TOKEN) + 1);
	MaJwtStatus st;

	st = ma_jwt_decode(VARDATA_ANY(token), len, buf, Min(len, MA_JWT_MAX_TOKEN) + 1, jwt);
	if (st != MA_JWT_OK)
		report_jwt_error(st, jwt, NULL);
}

/*
 * Parses the claims of a token whose signature matched and checks its
 * times; returns MA_JWT_OK or MA_JWT_EXPIRED (when allow_expired), raising
 * every other failure.
 */
static MaJwtStatus
check_claims_or_error(MaJwt *jwt, bool verify_exp, bool allow_expired)
{
	MaJwtStatus st = ma_jwt_read_claims(jwt);

	if (st == MA_JWT_OK)
		st = ma_jwt_check_time(jwt, statement_unix_time(), ma_jwt_leeway_s,
							   verify_exp);
	if (st != MA_JWT_OK && !(st == MA_JWT_EXPIRED && allow_expired))
		report_jwt_error(st, jwt, NULL);
	return st;
}

/*
 * The claims as jsonb.  ma_jwt_read_claims() has checked that they are JSON
 * that jsonb accepts in UTF-8; they are converted to the database encoding
 * first (an error when a character has no equivalent there).
 */
static Jsonb *
claims_jsonb(const MaJwt *jwt)
{
	char	   *utf8 = pnstrdup(jwt->claims, jwt->claims_len);
	char	   *local = pg_any_to_server(utf8, (int) jwt->claims_len, PG_UTF8);

	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(local)));
}

static void
check_secret(text *secret)
{
	if (VARSIZE_ANY_EXHDR(secret) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("JWT secret must not be empty")));
}

/*
 * jwt_claims(token text, secret text, verify_exp boolean DEFAULT true)
 * RETURNS jsonb
 *
 * The claims of an HS256/HS384/HS512 token signed with secret, once the
 * signature matches (constant-time comparison) and, unless verify_exp is
 * false, the token has not expired; nbf is always checked.  Every failure
 * is an error with its own SQLSTATE (see report_jwt_error).
 */
Datum
metric_anomaly_jwt_claims(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(0);
	text	   *secret = PG_GETARG_TEXT_PP(1);
	bool		verify_exp = PG_GETARG_BOOL(2);
	MaJwt		jwt;

	check_secret(secret);
	decode_or_error(token, &jwt);
	if (!ma_jwt_signature_ok(&jwt, (const uint8 *) VARDATA_ANY(secret),
							 VARSIZE_ANY_EXHDR(secret)))
	{
		jwt.detail[0] = '\0';
		report_jwt_error(MA_JWT_BAD_SIGNATURE, &jwt, NULL);
	}
	check_claims_or_error(&jwt, verify_exp, false);
	PG_RETURN_JSONB_P(claims_jsonb(&jwt));
}

/* ---------------------------------------------------------------- record_event */

static MaStatement secrets_stmt = {
	"SELECT s.secret FROM metric_anomaly.jwt_secrets s"
	" WHERE s.enabled ORDER BY s.try_order, s.name",
	0, {InvalidOid}
};

static MaStatement insert_stmt = {
	"INSERT INTO metric_anomaly.business_events (event_type, payload)"
	" VALUES ($1, CASE WHEN $3 IS NULL THEN $2"
	" ELSE COALESCE($2, '{}'::pg_catalog.jsonb) OPERATOR(pg_catalog.||) $3 END)"
	" RETURNING id",
	3, {TEXTOID, JSONBOID, JSONBOID}
};

/* One row per skipped event: inserts never wait for each other. */
static MaStatement skip_stmt = {
	"INSERT INTO metric_anomaly.ingest_skips (event_type, reason) VALUES ($1, $2)",
	2, {TEXTOID, TEXTOID}
};

/*
 * True when the token's signature matches one of the enabled secrets, tried
 * in try_order.  Each costs one HMAC of the token.
 */
static bool
signature_matches_a_secret(const MaJwt *jwt)
{
	uint64		n = ma_execute(&secrets_stmt, NULL, NULL, SPI_OK_SELECT, 0);

	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no JWT secret is configured"),
				 errdetail("metric_anomaly.jwt_secrets has no enabled secret to verify the token with."),
				 errhint("As a member of metric_anomaly_admin, insert the signing secret into metric_anomaly.jwt_secrets.")));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
		text	   *secret;

		if (isnull)
			continue;
		secret = DatumGetTextPP(d);
		if (ma_jwt_signature_ok(jwt, (const uint8 *) VARDATA_ANY(secret),
								VARSIZE_ANY_EXHDR(secret)))
			return true;
	}
	return false;
}

/*
 * The dimension value of one c_meta field: a string of 1 to 64 characters
 * without control characters, or a number (as written); anything else,
 * including a missing field, is "unknown".
 */
static char *
dimension_value(JsonbContainer *c_meta, const char *field)
{
	JsonbValue *v = c_meta ? getKeyJsonValueFromContainer(c_meta, field, strlen(field), NULL) : NULL;
	char	   *s = NULL;

	if (v == NULL)
		return UNKNOWN_DIMENSION;
	if (v->type == jbvString)
		s = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v->type == jbvNumeric)
		s = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (s == NULL || s[0] == '\0' ||
		pg_mbstrlen(s) > MAX_DIMENSION_CHARS)
		return UNKNOWN_DIMENSION;
	for (const char *p = s; *p; p++)
		if ((unsigned char) *p < 0x20 || *p == 0x7F)
			return UNKNOWN_DIMENSION;
	return s;
}

/* {"app_v": ..., "os": ..., "os_v": ..., "net": ..., "device": ...} from the claims. */
static Jsonb *
dimensions_of(Jsonb *claims)
{
	JsonbValue *c_meta = getKeyJsonValueFromContainer(&claims->root, C_META_CLAIM,
													  strlen(C_META_CLAIM), NULL);
	JsonbContainer *obj = NULL;
	StringInfoData buf;

	if (c_meta != NULL && c_meta->type == jbvBinary &&
		JsonContainerIsObject(c_meta->val.binary.data))
		obj = c_meta->val.binary.data;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < lengthof(c_meta_fields); i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, c_meta_fields[i]);
		appendStringInfoString(&buf, ": ");
		escape_json(&buf, dimension_value(obj, c_meta_fields[i]));
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * record_event(event_type text, payload jsonb, token text DEFAULT NULL)
 * RETURNS bigint
 *
 * Inserts an event into business_events and returns its id.  With a token,
 * the token must be signed with one of the enabled secrets of jwt_secrets;
 * its c_meta fields are merged into the payload (which must then be a JSON
 * object or NULL) as the dimensions app_v, os, os_v, net and device,
 * overriding payload keys of the same names.  An expired token skips the
 * event, records the skip in ingest_skips and returns NULL; every other
 * token failure is an error.
 */
Datum
metric_anomaly_record_event(PG_FUNCTION_ARGS)
{
	Datum		values[3];
	char		nulls[3] = {' ', ' ', 'n'};
	int64		id = 0;
	bool		id_null = true;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_type must not be null")));
	values[0] = PG_GETARG_DATUM(0);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';
	else
		values[1] = PG_GETARG_DATUM(1);

	if (!PG_ARGISNULL(1) && !PG_ARGISNULL(2) &&
		!JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(1)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payload must be a JSON object when a token is given"),
				 errdetail("The token's client metadata is added to the payload as object members.")));

	ma_spi_connect();
	if (!PG_ARGISNULL(2))
	{
		MaJwt		jwt;

		decode_or_error(PG_GETARG_TEXT_PP(2), &jwt);
		if (!signature_matches_a_secret(&jwt))
		{
			jwt.detail[0] = '\0';
			report_jwt_error(MA_JWT_BAD_SIGNATURE, &jwt,
							 "Check that the token was signed with one of the enabled secrets of metric_anomaly.jwt_secrets.");
		}
		if (check_claims_or_error(&jwt, true, true) == MA_JWT_EXPIRED)
		{
			Datum		skip[2] = {values[0], CStringGetTextDatum("expired")};

			ma_execute(&skip_stmt, skip, NULL, SPI_OK_INSERT, 0);
			ma_spi_finish();
			PG_RETURN_NULL();
		}
		values[2] = JsonbPGetDatum(dimensions_of(claims_jsonb(&jwt)));
		nulls[2] = ' ';
	}
	if (ma_execute(&insert_stmt, values, nulls, SPI_OK_INSERT_RETURNING, 1) == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &id_null);

		if (!id_null)
			id = DatumGetInt64(d);
	}
	ma_spi_finish();
	if (id_null)
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}
