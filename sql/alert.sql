-- Alerting: channel validation, episodes (firing, resolved, cooldown),
-- threshold rules, routing and the outbox.  No delivery worker runs here,
-- so deliveries stay pending.  Defaults: resolve after 5 normal minutes,
-- cooldown 15 minutes.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';

-- Verdicts of minutes [f, t] after 2026-01-01 00:00, as detection writes them.
CREATE FUNCTION pg_temp.put(m text, f int, t int, v float8, anomaly boolean) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO metric_anomaly.aggregated_metrics
        (metric_name, metric_timestamp, metric_value, sample_count, is_anomaly, anomaly_context, needs_eval)
    SELECT m, '2026-01-01 00:00+00'::timestamptz + g * interval '1 minute', v, 1, anomaly,
           '{"method": "3-sigma", "mean": 100, "std_dev": 5, "upper_boundary": 115, "lower_boundary": 85}',
           false
      FROM generate_series(f, t) g
$$;

-- Channels: only http(s) URLs, no control characters in secrets.
INSERT INTO metric_anomaly.alert_channels (name, kind, url) VALUES ('bad', 'webhook', 'file:///etc/passwd');
INSERT INTO metric_anomaly.alert_channels (name, kind, url) VALUES ('bad', 'webhook', 'javascript:alert(1)');
INSERT INTO metric_anomaly.alert_channels (name, kind, url) VALUES ('bad', 'teams', 'https://example.com/');
INSERT INTO metric_anomaly.alert_channels (name, kind, url) VALUES ('bad name', 'webhook', 'https://example.com/');
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret) VALUES ('bad', 'feishu', 'https://example.com/', E'a\nb');
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret) VALUES ('bad', 'slack_bot', 'https://slack.com/api', 'xoxb-1');
INSERT INTO metric_anomaly.alert_channels (name, kind, url, secret, options) VALUES
    ('ops', 'webhook', 'https://hooks.example.com/ops', NULL, '{}'),
    ('team', 'slack', 'https://hooks.slack.com/services/T/B/X', NULL, '{}'),
    ('off', 'wecom', 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K', NULL, '{}');
UPDATE metric_anomaly.alert_channels SET enabled = false WHERE name = 'off';
-- orders goes to team only; every other metric to every enabled channel.
INSERT INTO metric_anomaly.alert_routes VALUES ('orders', 'team');

-- An episode: two anomalous minutes, five normal ones resolve it.
SELECT pg_temp.put('signup', 0, 9, 100, false);
SELECT pg_temp.put('signup', 10, 11, 0, true);
SELECT pg_temp.put('signup', 12, 15, 100, false);
SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02');
SELECT pg_temp.put('signup', 16, 16, 100, false);
SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02');
-- Evaluating the same minutes again writes nothing.
SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02');
-- A new episode 10 minutes after the last firing alert is inside the
-- cooldown: tracked, not alerted; one 20 minutes after it alerts.
SELECT pg_temp.put('signup', 20, 20, 0, true);
SELECT pg_temp.put('signup', 21, 29, 100, false);
SELECT pg_temp.put('signup', 30, 30, 0, true);
SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02');
-- Minutes without a verdict neither fire nor resolve.
INSERT INTO metric_anomaly.aggregated_metrics
    (metric_name, metric_timestamp, metric_value, sample_count, is_anomaly, anomaly_context, needs_eval)
SELECT 'signup', '2026-01-01 00:00+00'::timestamptz + g * interval '1 minute', 100, 1, false, NULL, false
  FROM generate_series(31, 40) g;
SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02');

-- A threshold rule: above 1000 for 3 minutes.
INSERT INTO metric_anomaly.alert_rules (rule_name, metric_name, above, for_minutes)
VALUES ('orders_high', 'orders', 1000, 3);
INSERT INTO metric_anomaly.alert_rules (rule_name, metric_name) VALUES ('empty', 'orders');
SELECT pg_temp.put('orders', 0, 0, 500, false);
SELECT pg_temp.put('orders', 1, 2, 1500, false);
SELECT pg_temp.put('orders', 3, 3, 500, false);
SELECT pg_temp.put('orders', 4, 6, 1500, false);
SELECT pg_temp.put('orders', 7, 11, 900, false);
SELECT metric_anomaly.evaluate_alerts('2026-01-01', '2026-01-02');

SELECT id, metric_name, minute, value, state, source, episode_start, summary
  FROM metric_anomaly.alerts ORDER BY id;
SELECT context FROM metric_anomaly.alerts WHERE source LIKE 'threshold:%' ORDER BY id;
-- Episode state: orders' 3-sigma source never breached, so it keeps no row.
SELECT metric_name, source, firing, muted, episode_start, breach_streak, ok_streak, last_minute, last_fired_at
  FROM metric_anomaly.alert_episodes ORDER BY 1, 2;

-- One delivery per alert and routed enabled channel, pending.
SELECT alert_id, metric_name, alert_state, channel, kind, state, attempts, http_status,
       idempotency_key ~ ('^ma-' || alert_id || '-[0-9a-f]{20}$') AS key_ok
  FROM metric_anomaly.delivery_status ORDER BY alert_id, channel;
SELECT count(DISTINCT idempotency_key) = count(*) AS keys_unique FROM metric_anomaly.deliveries;

-- Only metric_anomaly_admin reads channels and deliveries.
CREATE ROLE regress_alert_reader;
SET ROLE regress_alert_reader;
SELECT count(*) FROM metric_anomaly.alert_channels;
SELECT count(*) FROM metric_anomaly.delivery_status;
SELECT metric_anomaly.test_channel('ops');
RESET ROLE;
GRANT metric_anomaly_admin TO regress_alert_reader;
SET ROLE regress_alert_reader;
SELECT count(*) FROM metric_anomaly.alert_channels;
RESET ROLE;
DROP ROLE regress_alert_reader;

-- test_channel: unknown channel; no answer is status 0.
SELECT metric_anomaly.test_channel('nope');
SET client_min_messages = error;
INSERT INTO metric_anomaly.alert_channels (name, url) VALUES ('closed', 'http://127.0.0.1:1/');
SELECT metric_anomaly.test_channel('closed');
RESET client_min_messages;

-- Retention (metric_anomaly.alert_retention, 30 days by default): a pass
-- deletes alerts created before as_of minus that, with their deliveries,
-- once none of those is pending or being retried.  Episode state stays.
-- The first alert was delivered, the second has one delivery still retrying;
-- both are old.  The others are recent.
UPDATE metric_anomaly.alerts
   SET created_at = CASE WHEN id <= 2 THEN timestamptz '2026-01-01 00:00+00'
                         ELSE timestamptz '2026-02-20 00:00+00' END;
UPDATE metric_anomaly.deliveries
   SET state = CASE WHEN alert_id = 1 THEN 'sent'
                    WHEN channel = 'ops' THEN 'failed' ELSE 'dead' END
 WHERE alert_id <= 2;
SELECT count(*) AS episodes_before FROM metric_anomaly.alert_episodes \gset
SELECT metric_anomaly.process_pending('2026-03-01 00:00+00');
SELECT id, state, created_at FROM metric_anomaly.alerts ORDER BY id;
SELECT alert_id, channel, state FROM metric_anomaly.deliveries ORDER BY alert_id, channel;
SELECT count(*) = :episodes_before AS episodes_kept FROM metric_anomaly.alert_episodes;
-- Once the retrying delivery ends, the next pass deletes its alert.
UPDATE metric_anomaly.deliveries SET state = 'dead' WHERE alert_id = 2;
SELECT metric_anomaly.process_pending('2026-03-01 00:00+00');
SELECT min(id) AS first_alert_left, count(*) AS alerts_left FROM metric_anomaly.alerts;
SELECT count(*) AS deliveries_of_deleted_alerts FROM metric_anomaly.deliveries WHERE alert_id <= 2;

DROP EXTENSION metric_anomaly;
