#!/usr/bin/env bash
# Benchmark (not a test): JWT verification and ingestion.  N tokens
# (default 20,000, HS256, with c_meta) are verified by jwt_claims() (C) and
# by the same checks written in SQL over pgcrypto, as the pgjwt extension
# does (split, base64url, hmac(), compare, exp).  N events are recorded with
# record_event(token), with the same done in PL/pgSQL over that SQL
# verifier (secret from the table, c_meta as dimensions, INSERT), and with
# a PL/pgSQL INSERT of the finished payload without any token (the floor).
# Each runs ROUNDS times (default 3), alternating; best round printed.
#
#   test/bench/jwt.sh [N]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
. "$here/test/common.sh"
N="${1:-20000}"
ROUNDS="${ROUNDS:-3}"
bash "$here/test/setup.sh" >/dev/null
build_and_install "$here" >/dev/null

start_cluster 55437 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'"

q -d postgres -c "CREATE EXTENSION metric_anomaly" -c "CREATE EXTENSION pgcrypto" -c "
CREATE FUNCTION b64u(b bytea) RETURNS text LANGUAGE sql IMMUTABLE AS \$\$
    SELECT rtrim(translate(encode(b, 'base64'), E'+/\n', '-_'), '=') \$\$;
CREATE FUNCTION b64u_decode(t text) RETURNS bytea LANGUAGE sql IMMUTABLE AS \$\$
    SELECT decode(translate(t, '-_', '+/') || repeat('=', (4 - length(t) % 4) % 4), 'base64') \$\$;
-- The peer: pgjwt-style verification in SQL.
CREATE FUNCTION sql_jwt_claims(token text, secret text) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE
    p text[] := string_to_array(token, '.');
    header jsonb;
    claims jsonb;
BEGIN
    IF array_length(p, 1) <> 3 THEN RAISE EXCEPTION 'malformed'; END IF;
    header := convert_from(b64u_decode(p[1]), 'UTF8')::jsonb;
    IF header ->> 'alg' IS DISTINCT FROM 'HS256' THEN RAISE EXCEPTION 'alg'; END IF;
    IF b64u(hmac(p[1] || '.' || p[2], secret, 'sha256')) <> p[3] THEN RAISE EXCEPTION 'signature'; END IF;
    claims := convert_from(b64u_decode(p[2]), 'UTF8')::jsonb;
    IF (claims ->> 'exp')::float8 <= extract(epoch FROM statement_timestamp()) - 60 THEN RAISE EXCEPTION 'expired'; END IF;
    RETURN claims;
END \$\$;
CREATE FUNCTION sql_record_event(event_type text, payload jsonb, token text) RETURNS bigint
LANGUAGE plpgsql AS \$\$
DECLARE
    m jsonb;
    id bigint;
BEGIN
    m := sql_jwt_claims(token, (SELECT secret FROM metric_anomaly.jwt_secrets WHERE enabled
                                 ORDER BY try_order, name LIMIT 1)) -> 'c_meta';
    INSERT INTO metric_anomaly.business_events (event_type, payload)
    VALUES (event_type, payload || jsonb_build_object(
        'app_v', coalesce(m ->> 'app_v', 'unknown'), 'os', coalesce(m ->> 'os', 'unknown'),
        'os_v', coalesce(m ->> 'os_v', 'unknown'), 'net', coalesce(m ->> 'net', 'unknown'),
        'device', coalesce(m ->> 'device', 'unknown')))
    RETURNING business_events.id INTO id;
    RETURN id;
END \$\$;
CREATE FUNCTION plain_insert(event_type text, payload jsonb) RETURNS bigint
LANGUAGE plpgsql AS \$\$
DECLARE
    id bigint;
BEGIN
    INSERT INTO metric_anomaly.business_events (event_type, payload) VALUES (event_type, payload)
    RETURNING business_events.id INTO id;
    RETURN id;
END \$\$;
CREATE TABLE tokens AS
SELECT i, input || '.' || b64u(hmac(input, 'bench-secret-0123456789abcdef', 'sha256')) AS token
  FROM generate_series(1, $N) i,
       LATERAL (SELECT b64u(convert_to('{\"alg\":\"HS256\",\"typ\":\"JWT\"}', 'UTF8')) || '.' ||
                       b64u(convert_to(format('{\"sub\":\"user-%s\",\"iat\":1767225600,\"exp\":4102444800,\"c_meta\":{\"app_v\":\"2.%s.1\",\"os\":\"android\",\"os_v\":\"13\",\"net\":\"4g\",\"device\":\"pixel-7\"}}', i, i % 10), 'UTF8')) AS input) x;
INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('bench', 'bench-secret-0123456789abcdef')" \
	-c "VACUUM ANALYZE tokens" >/dev/null

ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Runs the SQL of \$2 and prints its milliseconds.
timed() {
	local t0 t1
	t0=$(ms)
	q -d postgres -At -c "$1" >/dev/null
	t1=$(ms)
	echo $((t1 - t0))
}

best_c=; best_s=; best_r=; best_p=; best_i=
for r in $(seq 1 "$ROUNDS"); do
	c=$(timed "SELECT count(metric_anomaly.jwt_claims(token, 'bench-secret-0123456789abcdef')) FROM tokens")
	s=$(timed "SELECT count(sql_jwt_claims(token, 'bench-secret-0123456789abcdef')) FROM tokens")
	rec=$(timed "SELECT count(metric_anomaly.record_event('api_request', '{\"endpoint\": \"/cart\"}', token)) FROM tokens")
	p=$(timed "SELECT count(sql_record_event('api_request', '{\"endpoint\": \"/cart\"}', token)) FROM tokens")
	ins=$(timed "SELECT count(plain_insert('api_request', '{\"endpoint\": \"/cart\", \"app_v\": \"2.7.1\", \"os\": \"android\", \"os_v\": \"13\", \"net\": \"4g\", \"device\": \"pixel-7\"}')) FROM tokens")
	echo "round $r: jwt_claims ${c} ms, SQL+pgcrypto ${s} ms; record_event ${rec} ms, PL/pgSQL+pgcrypto ${p} ms, INSERT without token ${ins} ms"
	[ -n "$best_c" ] && [ "$best_c" -le "$c" ] || best_c=$c
	[ -n "$best_s" ] && [ "$best_s" -le "$s" ] || best_s=$s
	[ -n "$best_r" ] && [ "$best_r" -le "$rec" ] || best_r=$rec
	[ -n "$best_p" ] && [ "$best_p" -le "$p" ] || best_p=$p
	[ -n "$best_i" ] && [ "$best_i" -le "$ins" ] || best_i=$ins
done
awk -v n="$N" -v c="$best_c" -v s="$best_s" -v r="$best_r" -v p="$best_p" -v i="$best_i" 'BEGIN {
	printf "verify %d HS256 tokens: jwt_claims %d ms (%.1f us each) vs SQL+pgcrypto %d ms (%.1f us each): %.1fx faster\n",
		n, c, 1000 * c / n, s, 1000 * s / n, s / (c > 0 ? c : 1)
	printf "record %d events: record_event %d ms (%.1f us each) vs PL/pgSQL+pgcrypto %d ms (%.1f us each): %.1fx faster; INSERT without a token %d ms (%.1f us each)\n",
		n, r, 1000 * r / n, p, 1000 * p / n, p / (r > 0 ? r : 1), i, 1000 * i / n
}'
