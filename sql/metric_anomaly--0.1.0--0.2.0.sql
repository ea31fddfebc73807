/*
 * metric_anomaly 0.1.0 -> 0.2.0: upgrade script.
 *
 * Every schema change of 0.2.0 is made here as well as in
 * metric_anomaly--0.2.0.sql, so that an upgraded database equals a fresh
 * install (test/t/008_upgrade.pl compares the two).  Columns a fresh install
 * has are added at the end of their table in both scripts, so the column
 * order agrees.
 */

\echo Use "ALTER EXTENSION metric_anomaly UPDATE" to load this file. \quit

------------------------------------------------------------------------------
-- Alert wing: resumable multi-step deliveries, per-channel rate limits.
------------------------------------------------------------------------------
ALTER TABLE metric_anomaly.deliveries ADD COLUMN step_state text;

COMMENT ON COLUMN metric_anomaly.deliveries.steps_done IS
    'Requests of a multi-request delivery (WeCom markdown then image, Slack bot upload) already accepted; a retry sends only the rest.';
COMMENT ON COLUMN metric_anomaly.deliveries.step_state IS
    'What the accepted steps answered that later steps need (Slack bot: the file id and upload URL), so a retry resumes at the first step not accepted; NULL when nothing.';
COMMENT ON COLUMN metric_anomaly.alert_channels.options IS
    'Per-kind options: {"chart": true|false} attaches the chart where the kind carries images (default true); slack_bot needs {"channel": "C0123"}; {"rate_limit": N} caps the requests sent per minute (0 = no limit; default the platform''s documented limit: wecom and dingtalk 20, feishu 100, slack and slack_bot 60, webhook none).';
