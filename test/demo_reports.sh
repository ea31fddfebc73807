# The scheduled-reports part of `make demo`; sourced by test/demo.sh after
# the alert part (test/common.sh and test/demo_alert.sh loaded, q, $here and
# the receiver channel demo-receiver defined).
#
#   reports_demo DB OUTDIR
#       The two designs of issue 14, end to end:
#       - mobile diagnostics: API calls recorded with record_event() and a
#         real HS256 token whose c_meta claim carries the app version; the
#         p95 latency heatmap (app version x endpoint) of the last 15
#         minutes, every 5 minutes, when there are at least 50 samples;
#       - weekly-report charts: orders per minute (left axis, solid, markers)
#         and amount per minute (right axis, dashed) of the last 60 minutes,
#         every 5 minutes, totals in the title.
#       Both go to the local receiver through the outbox; the latest PNGs
#       (latest_report) are written to OUTDIR/report_*.png.

# An HS256 JWT (base64url, no padding) of the claims JSON, signed with secret.
demo_jwt() {
	perl -MDigest::SHA=hmac_sha256 -MMIME::Base64 -e '
		sub b64u { my $s = encode_base64($_[0], ""); $s =~ tr{+/}{-_}; $s =~ s/=+$//; $s }
		my ($claims, $secret) = @ARGV;
		my $si = b64u(q({"alg":"HS256","typ":"JWT"})) . "." . b64u($claims);
		print $si, ".", b64u(hmac_sha256($si, $secret)), "\n";' "$1" "$2"
}

reports_demo() {
	local db="$1" out="$2" secret="demo-signing-secret" tokens="$2/tokens.csv" v exp
	exp=$(( $(date +%s) + 3600 ))

	say "Mobile diagnostics: app tokens (HS256, c_meta claim) and the metric definitions"
	: >"$tokens"
	for v in 2.6.0 2.6.1 2.7.0 2.7.1 2.8.0; do
		echo "$v,$(demo_jwt "{\"sub\":\"device-$v\",\"exp\":$exp,\"c_meta\":{\"app_v\":\"$v\",\"os\":\"android\",\"os_v\":\"13\",\"net\":\"4g\",\"device\":\"pixel-7\"}}" "$secret")" >>"$tokens"
	done
	# no c_meta: its dimensions are "unknown"; expired: skipped and counted
	echo "none,$(demo_jwt "{\"sub\":\"old-app\",\"exp\":$exp}" "$secret")" >>"$tokens"
	echo "expired,$(demo_jwt "{\"sub\":\"stale\",\"exp\":$(( $(date +%s) - 600 ))}" "$secret")" >>"$tokens"
	chmod 644 "$tokens"
	echo "token of app 2.7.1: $(sed -n 4p "$tokens" | cut -d, -f2)"
	q -d "$db" <<SQL
INSERT INTO metric_anomaly.jwt_secrets (name, secret) VALUES ('mobile', '$secret');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile, dimensions)
VALUES ('api_latency_p95', '{api_request}', 'quantile', '{latency_ms}', 0.95, '{app_v,endpoint}');
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path)
VALUES ('orders', '{order_paid}', 'count', NULL), ('amount', '{order_paid}', 'sum', '{amount}');
SELECT metric_name, aggregate, quantile, value_path, dimensions FROM metric_anomaly.metric_definitions ORDER BY 1;
SQL

	say "An hour of API calls and paid orders, through record_event() with the tokens"
	# record_event() dates events now(); in the same transaction they are
	# spread over the last hour, as if they had arrived live (the worker
	# only sees them once committed).
	q -d "$db" <<SQL
CREATE TEMP TABLE tokens (app text, token text);
\\copy tokens FROM '$tokens' WITH (FORMAT csv)
SELECT setseed(0.14);
BEGIN;
CREATE TEMP TABLE recorded AS
SELECT metric_anomaly.record_event('api_request',
           jsonb_build_object('endpoint', e,
               'latency_ms', round((exp(4 + 0.5 * sqrt(-2 * ln(random())) * cos(2 * pi() * random()))
                   * CASE WHEN t.app = '2.7.1' AND e = '/v2/feed' THEN 4 ELSE 1 END)::numeric, 1)),
           t.token) AS id, i
  FROM generate_series(1, 6000) i,
       LATERAL (SELECT (array['/v1/login', '/v1/pay', '/v2/feed', '/v2/orders', '/v2/profile', '/v2/search'])
                       [1 + floor(random() * 6 + i * 0)::int] AS e) ep,
       LATERAL (SELECT * FROM tokens WHERE app <> 'expired' OFFSET floor(random() * 6 + i * 0)::int LIMIT 1) t
UNION ALL
SELECT metric_anomaly.record_event('order_paid',
           jsonb_build_object('order_id', i, 'amount', round((20 + random() * 80)::numeric, 2)),
           (SELECT token FROM tokens WHERE app = '2.8.0')), i
  FROM generate_series(1, 900) i;
-- the expired token: skipped, counted in ingest_stats, no error
SELECT metric_anomaly.record_event('api_request', '{"endpoint": "/v1/login", "latency_ms": 1}',
                                   (SELECT token FROM tokens WHERE app = 'expired')) IS NULL AS expired_skipped;
UPDATE metric_anomaly.business_events b
   SET event_timestamp = date_trunc('minute', now()) - interval '60 minutes'
                         + random() * interval '3599 seconds'
  FROM recorded r WHERE b.id = r.id;
COMMIT;
SELECT payload ->> 'app_v' AS app_v, count(*) AS api_calls
  FROM metric_anomaly.business_events WHERE event_type = 'api_request' GROUP BY 1 ORDER BY 1;
SELECT event_type, reason, skipped FROM metric_anomaly.ingest_stats;
SQL

	say "The two reports: every 5 minutes on the wall clock, to the local receiver"
	q -d "$db" <<'SQL'
INSERT INTO metric_anomaly.reports (name, kind, metrics, dimensions, range, title, channels, run_every, min_samples)
VALUES ('mobile_p95_heatmap', 'heatmap', '{api_latency_p95}', '{app_v,endpoint}', '15 minutes',
        'API p95 latency (ms), last 15 minutes', '{demo-receiver}', '5 minutes', 50);
INSERT INTO metric_anomaly.reports (name, kind, metrics, right_axis, range, title, channels, run_every, min_samples)
VALUES ('orders_and_amount', 'line_chart', '{orders,amount}', '{amount}', '60 minutes',
        'Orders and amount per minute, last 60 minutes', '{demo-receiver}', '5 minutes', 1);
SQL
	for _ in $(seq 1 90); do
		[ "$(q -d "$db" -At -c "SELECT count(*) FROM metric_anomaly.report_runs r
		                          JOIN metric_anomaly.deliveries d ON d.alert_id = r.alert_id
		                         WHERE d.state IN ('sent', 'dead')")" -ge 2 ] && break
		sleep 1
	done
	q -d "$db" -c "SELECT report_name, to_char(slot, 'HH24:MI') AS slot, status, samples, title
	                 FROM metric_anomaly.report_runs ORDER BY report_name, slot"
	q -d "$db" -c "SELECT alert_id, metric_name AS report, alert_state, channel, state, attempts, http_status
	                 FROM metric_anomaly.delivery_status WHERE alert_state = 'report' ORDER BY alert_id"
	local f n=0
	for f in "$out"/receiver/req-*.body; do
		grep -q '"state":"report"' "$f" 2>/dev/null || continue
		n=$((n + 1))
		perl -ne 'print "  received: $1 ($2)\n" if /"metric":"([^"]+)".*"summary":"([^"]+)"/' "$f"
	done
	echo "$n report(s) arrived at the receiver"

	say "The latest PNGs, as business people open them (latest_report)"
	for f in mobile_p95_heatmap orders_and_amount; do
		q -d "$db" -At -c "SELECT encode(metric_anomaly.latest_report('$f'), 'hex')" |
			perl -ne 'chomp; print pack("H*", $_)' >"$out/report_$f.png"
		echo "wrote $out/report_$f.png ($(wc -c <"$out/report_$f.png") bytes)"
	done
}
