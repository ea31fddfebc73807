-- JWT verification (jwt_claims) and ingestion (record_event).
--
-- The fixtures (test/fixtures/jwt/tokens.csv) were made by the npm package
-- jsonwebtoken 9.0.3 (test/fixtures/jwt/generate.js), with what
-- jsonwebtoken.verify said of each.  Tokens relative to now() and the HMAC
-- cross-check are minted here with pgcrypto (OpenSSL).
CREATE EXTENSION metric_anomaly;
CREATE EXTENSION pgcrypto;
SET timezone = 'UTC';
SET datestyle = 'ISO';

CREATE TEMP TABLE fixtures (n serial, name text, secret text, token text, jsonwebtoken_verdict text);
\copy fixtures (name, secret, token, jsonwebtoken_verdict) FROM 'test/fixtures/jwt/tokens.csv' WITH (FORMAT csv, HEADER true)

-- 'ok', or the SQLSTATE and message of the error.
CREATE FUNCTION pg_temp.verdict(token text, secret text, verify_exp boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM metric_anomaly.jwt_claims(token, secret, verify_exp);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;

-- base64url without padding, and a token signed by pgcrypto's HMAC.
CREATE FUNCTION pg_temp.b64u(b bytea) RETURNS text LANGUAGE sql AS $$
    SELECT rtrim(translate(encode(b, 'base64'), E'+/\n', '-_'), '=')
$$;
CREATE FUNCTION pg_temp.mint(claims text, secret text, alg text DEFAULT 'HS256') RETURNS text
LANGUAGE sql AS $$
    SELECT input || '.' || pg_temp.b64u(hmac(convert_to(input, 'UTF8'), convert_to(secret, 'UTF8'),
                                            'sha' || substr(alg, 3)))
      FROM (SELECT pg_temp.b64u(convert_to('{"alg":"' || alg || '","typ":"JWT"}', 'UTF8')) || '.' ||
                   pg_temp.b64u(convert_to(claims, 'UTF8')) AS input) i
$$;
-- The claims of a token decoded by PostgreSQL itself, without verification.
CREATE FUNCTION pg_temp.payload(token text) RETURNS jsonb LANGUAGE sql AS $$
    SELECT convert_from(decode(p || repeat('=', (4 - length(p) % 4) % 4), 'base64'), 'UTF8')::jsonb
      FROM (SELECT translate(split_part(token, '.', 2), '-_', '+/') AS p) x
$$;

-- Every fixture: our verdict beside jsonwebtoken's.  We are stricter where
-- the RFCs allow it: duplicate alg or exp, crit, an unknown typ, claims that
-- are not an object or not UTF-8, and tokens over 8192 bytes are refused.
SELECT name, length(token) AS bytes, pg_temp.verdict(token, secret) AS ours, jsonwebtoken_verdict
  FROM fixtures ORDER BY n;

-- Valid tokens give exactly the claims jsonwebtoken signed.
SELECT name, metric_anomaly.jwt_claims(token, secret) = pg_temp.payload(token) AS same_claims
  FROM fixtures WHERE jsonwebtoken_verdict = 'ok' AND pg_temp.verdict(token, secret) = 'ok'
 ORDER BY n;
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'hs256';
-- Unaligned: psql before 15 counts the emoji one column wide, not two.
\pset format unaligned
SELECT metric_anomaly.jwt_claims(token, secret) ->> 'sub' AS sub FROM fixtures WHERE name = 'hs256_unicode';
\pset format aligned

-- Each failure in full: message, detail, hint.
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'oversize';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'malformed_two_parts';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'bad_base64_character';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'signature_noncanonical';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'bad_json_claims';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'exp_string';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'alg_none';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'rs256';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'crit_header';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'tampered_payload';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'expired';
SELECT metric_anomaly.jwt_claims(token, secret) FROM fixtures WHERE name = 'nbf_future';
SELECT metric_anomaly.jwt_claims(token, '') FROM fixtures WHERE name = 'hs256';

-- verify_exp => false reads an expired token; nbf is still checked.
SELECT metric_anomaly.jwt_claims(token, secret, false) ->> 'exp' AS exp FROM fixtures WHERE name = 'expired';
SELECT pg_temp.verdict(token, secret, false) FROM fixtures WHERE name = 'nbf_future';

-- More malformed input: empty, one part, a Bearer prefix, 1 MB.
SELECT pg_temp.verdict(t, 's') FROM (VALUES (''), ('abc'), ('a.b'), ('..'), ('a.b.c.d.e')) v(t);
SELECT pg_temp.verdict('Bearer ' || token, secret) FROM fixtures WHERE name = 'hs256';
SELECT pg_temp.verdict(repeat('a', 1000000), 's');
SELECT metric_anomaly.jwt_claims(NULL, 's') IS NULL AS null_token;

-- Changing any single character of a valid token is refused, and how.
SELECT split_part(v, ' ', 1) AS sqlstate, count(*)
  FROM fixtures f, generate_series(1, length(f.token)) i,
       LATERAL (SELECT pg_temp.verdict(overlay(f.token PLACING
                   CASE WHEN substr(f.token, i, 1) = 'A' THEN 'B' ELSE 'A' END FROM i FOR 1),
                   f.secret) AS v) x
 WHERE f.name = 'hs256'
 GROUP BY 1 ORDER BY 1;

-- HMAC against pgcrypto: every key length from 1 to 300 bytes (both sides
-- of the 64- and 128-byte blocks), signing inputs of many lengths, each
-- algorithm.  All 900 verify; each fails with a key one byte shorter.
SELECT alg, count(*) AS tokens,
       count(*) FILTER (WHERE pg_temp.verdict(tok, key) = 'ok') AS verified,
       count(*) FILTER (WHERE pg_temp.verdict(tok, substr(key, 2)) = 'ok') AS verified_wrong_key
  FROM (SELECT alg, key, pg_temp.mint('{"n":"' || repeat('x', k % 211) || '"}', key, alg) AS tok
          FROM unnest(ARRAY['HS256', 'HS384', 'HS512']) alg,
               generate_series(1, 300) k,
               LATERAL (SELECT substr(repeat(md5(k::text), 10), 1, k) AS key) s) t
 GROUP BY alg ORDER BY alg;
-- A non-ASCII secret is its UTF-8 bytes.
SELECT pg_temp.verdict(pg_temp.mint('{"a":1}', 'clé-日本'), 'clé-日本');

-- Leeway: 60 s by default, metric_anomaly.jwt_leeway to change it.
SHOW metric_anomaly.jwt_leeway;
SELECT d AS exp_minus_now, pg_temp.verdict(pg_temp.mint(format('{"exp":%s}', extract(epoch FROM now()) + d), 's'), 's')
  FROM unnest(ARRAY[-61, -59, 30]) d;
SELECT d AS nbf_minus_now, pg_temp.verdict(pg_temp.mint(format('{"nbf":%s}', extract(epoch FROM now()) + d), 's'), 's')
  FROM unnest(ARRAY[-30, 59, 61]) d;
SET metric_anomaly.jwt_leeway = 0;
SELECT d AS exp_minus_now, pg_temp.verdict(pg_temp.mint(format('{"exp":%s}', extract(epoch FROM now()) + d), 's'), 's')
  FROM unnest(ARRAY[-1, 1]) d;
SELECT d AS nbf_minus_now, pg_temp.verdict(pg_temp.mint(format('{"nbf":%s}', extract(epoch FROM now()) + d), 's'), 's')
  FROM unnest(ARRAY[-1, 1]) d;
RESET metric_anomaly.jwt_leeway;
SET metric_anomaly.jwt_leeway = 3601;

-- JSON the verifier refuses so that jsonb never has to.
SELECT c, pg_temp.verdict(pg_temp.mint(c, 's'), 's')
  FROM unnest(ARRAY['{"a":"\u0000"}', '{"a":"\udc00"}', '{"a":1e1001}', '{"a":1e1000}',
                    '{"a":01}', '{"a":[1,]}', '{} {}', ' {"a":true} ', '{"a":' || repeat('[', 32) || repeat(']', 32) || '}',
                    '{"a":' || repeat('[', 31) || repeat(']', 31) || '}', '{"exp":1e400}', '{"\u0065xp":1}']) c;

------------------------------------------------------------------------------
-- record_event
------------------------------------------------------------------------------
-- Without secrets, a token cannot be verified.
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'hs256';

-- The secrets: 'next' (a rotation in progress) before 'current'.
INSERT INTO metric_anomaly.jwt_secrets (name, secret, try_order)
SELECT 'current', secret, 2 FROM fixtures WHERE name = 'hs256';
INSERT INTO metric_anomaly.jwt_secrets (name, secret, try_order)
SELECT 'next', secret, 1 FROM fixtures WHERE name = 'hs256_long_secret';
INSERT INTO metric_anomaly.jwt_secrets (name, secret, enabled) VALUES ('retired', 'old-secret', false);
-- Bad rows are refused without repeating the secret.
INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('empty', '');
INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('null', NULL);
INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('huge', repeat('s', 4097));
INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('bad name', 'x');

-- Dimensions from c_meta; the token's values win over the payload's.
SELECT f.name, metric_anomaly.record_event('order', '{"amount": 12.5, "os": "spoofed"}', f.token) IS NOT NULL AS recorded
  FROM fixtures f
 WHERE f.name IN ('hs256', 'hs256_long_secret', 'hs256_kid_no_exp', 'hs256_unicode', 'hs256_c_meta_string',
                  'hs256_c_meta_partial', 'hs256_no_c_meta')
 ORDER BY f.n;
SELECT metric_anomaly.record_event('signup', NULL, pg_temp.mint(
    '{"c_meta":{"app_v":"' || repeat('9', 65) || '","os":"a\u0001b","os_v":"","net":"5g","device":true}}',
    secret)) IS NOT NULL AS recorded
  FROM fixtures WHERE name = 'hs256';
-- Without a token the payload is stored as given.
SELECT metric_anomaly.record_event('signup', '[1, 2]') IS NOT NULL AS recorded;
SELECT event_type, payload FROM metric_anomaly.business_events ORDER BY id;

-- An expired token skips the event, counts it and does not fail the caller.
SELECT metric_anomaly.record_event('order', '{}', token) AS id FROM fixtures WHERE name = 'expired';
SELECT metric_anomaly.record_event('order', '{}', token) AS id FROM fixtures WHERE name = 'expired';
SELECT metric_anomaly.record_event('signup', NULL, token) AS id FROM fixtures WHERE name = 'expired';
SELECT event_type, reason, skipped, first_skipped_at <= last_skipped_at AS ordered
  FROM metric_anomaly.ingest_stats ORDER BY event_type;

-- Invalid tokens are errors: nothing is recorded or counted.
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'tampered_payload';
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'alg_none';
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'rs256';
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'nbf_future';
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'malformed_two_parts';
SELECT metric_anomaly.record_event('order', '[1]', token) FROM fixtures WHERE name = 'hs256';
SELECT metric_anomaly.record_event(NULL, '{}');
SELECT count(*) AS events FROM metric_anomaly.business_events;
SELECT sum(skipped) AS skipped FROM metric_anomaly.ingest_stats;

-- Rotation: with 'current' disabled its tokens fail; 'next' still verifies.
UPDATE metric_anomaly.jwt_secrets SET enabled = false WHERE name = 'current';
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'hs256';
SELECT metric_anomaly.record_event('order', '{}', token) IS NOT NULL AS recorded FROM fixtures WHERE name = 'hs256_long_secret';
UPDATE metric_anomaly.jwt_secrets SET enabled = true WHERE name = 'current';

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------
SELECT p.proname, p.prosecdef, p.proconfig,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'metric_anomaly' AND p.proname IN ('jwt_claims', 'record_event', 'jwt_secrets_check')
 ORDER BY 1;

CREATE ROLE regress_jwt_app;
CREATE ROLE regress_jwt_other;
CREATE ROLE regress_jwt_admin IN ROLE metric_anomaly_admin;
GRANT EXECUTE ON FUNCTION metric_anomaly.record_event(text, jsonb, text) TO regress_jwt_app;
GRANT SELECT ON fixtures TO regress_jwt_app, regress_jwt_other;

-- The application records events with tokens but reads no secret and no event.
SET ROLE regress_jwt_app;
SELECT metric_anomaly.record_event('order', '{}', token) IS NOT NULL AS recorded FROM fixtures WHERE name = 'hs384';
SELECT metric_anomaly.record_event('order', '{}', token) AS id FROM fixtures WHERE name = 'expired';
SELECT event_type, skipped FROM metric_anomaly.ingest_stats ORDER BY event_type;
SELECT * FROM metric_anomaly.jwt_secrets;
SELECT secret FROM metric_anomaly.jwt_secrets;
SELECT * FROM metric_anomaly.business_events;
SELECT * FROM metric_anomaly.ingest_skips;
INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('mine', 'x');
SET metric_anomaly.jwt_leeway = 3600;
-- A wrong token's error carries no secret.
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'wrong_secret';
RESET ROLE;

-- Without the grant, record_event cannot be called; jwt_claims can (it
-- reads nothing but its arguments).
SET ROLE regress_jwt_other;
SELECT metric_anomaly.record_event('order', '{}', token) FROM fixtures WHERE name = 'hs256';
SELECT metric_anomaly.jwt_claims(token, secret) ->> 'sub' AS sub FROM fixtures WHERE name = 'hs256';
RESET ROLE;

-- Admins read and manage the secrets.
SET ROLE regress_jwt_admin;
SELECT name, try_order, enabled FROM metric_anomaly.jwt_secrets ORDER BY try_order, name;
DELETE FROM metric_anomaly.ingest_skips WHERE reason = 'expired';
RESET ROLE;

REVOKE SELECT ON fixtures FROM regress_jwt_app, regress_jwt_other;
REVOKE EXECUTE ON FUNCTION metric_anomaly.record_event(text, jsonb, text) FROM regress_jwt_app;
DROP ROLE regress_jwt_app, regress_jwt_other, regress_jwt_admin;
DROP EXTENSION metric_anomaly;
DROP EXTENSION pgcrypto;
