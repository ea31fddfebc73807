#!/usr/bin/env bash
# Benchmark (not a test): 200 alerts to 10 webhook channels on local
# receivers (test/receiver.pl), one of which never answers.  Measures how
# long the nine answering channels take to have all 180 of theirs sent, from
# the commit of the alerts to the last sent_at, with the delivery worker's
# defaults (alert_concurrency 16, alert_channel_concurrency 1) and, in the
# same run, with alert_concurrency = 1 (one transfer at a time, which is how
# delivery worked before 0.2.0).
#
#   test/bench/delivery.sh [TIMEOUT_S]
#       TIMEOUT_S: metric_anomaly.alert_timeout, the hanging channel's
#       timeout per attempt (default 2)
#
# Builds and installs the extension and runs a throwaway cluster as an
# unprivileged user.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$here/test/setup.sh" >/dev/null
. "$here/test/common.sh"
build_and_install "$here" >/dev/null
TIMEOUT="${1:-2}"

rcvdir="$(mktemp -d /tmp/ma_bench_delivery.XXXXXX)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	stop_cluster
	rm -rf "$rcvdir"
}
start_cluster 55436 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'postgres'
metric_anomaly.alert_timeout = '${TIMEOUT}s'
metric_anomaly.alert_backoff = '200ms'
log_min_messages = warning"
trap cleanup EXIT
q() { "${RUN_AS[@]}" psql -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }

# Ten receivers; the last one reads each request and never answers.
urls=()
for i in $(seq 0 9); do
	mkdir -p "$rcvdir/$i"
	if [ "$i" = 9 ]; then echo hang > "$rcvdir/$i/script"; else echo 200 > "$rcvdir/$i/script"; fi
	perl "$here/test/receiver.pl" "$rcvdir/$i" 0 >/dev/null 2>&1 &
	pids+=($!)
done
for i in $(seq 0 9); do
	for _ in $(seq 1 100); do [ -s "$rcvdir/$i/port" ] && break; sleep 0.05; done
	urls+=("http://127.0.0.1:$(cat "$rcvdir/$i/port")/hook")
done

q -c "CREATE EXTENSION metric_anomaly"
values=""
for i in $(seq 0 9); do
	values+="${values:+,}('ch0$i', 'webhook', '${urls[$i]}', '{\"chart\": false}')"
done
q -c "INSERT INTO metric_anomaly.alert_channels (name, kind, url, options) VALUES $values"
q -c "SELECT metric_anomaly.start_delivery_worker()" >/dev/null
# The worker looks for the extension every 5 s while it is missing.
sleep 6

# One round: 200 alerts round-robin over the ten channels in one
# transaction; waits for the nine; prints the milliseconds.
round() {
	q -c "DELETE FROM metric_anomaly.alerts"
	q <<SQL
BEGIN;
INSERT INTO metric_anomaly.alerts (metric_name, minute, value, state, source, episode_start, summary)
SELECT 'm' || g, '2026-01-01 00:00+00', g, 'firing', '3-sigma', '2026-01-01 00:00+00', 'bench ' || g
  FROM pg_catalog.generate_series(1, 200) g;
INSERT INTO metric_anomaly.deliveries (alert_id, channel, idempotency_key)
SELECT a.id, 'ch0' || ((a.id - 1) % 10), 'key-' || a.id FROM metric_anomaly.alerts a;
COMMIT;
SQL
	for _ in $(seq 1 6000); do
		[ "$(q -c "SELECT count(*) FROM metric_anomaly.deliveries WHERE state = 'sent' AND channel <> 'ch09'")" = 180 ] && break
		sleep 0.05
	done
	q -c "SELECT round(extract(epoch FROM max(sent_at) - min(created_at)) * 1000)
	        FROM metric_anomaly.deliveries WHERE channel <> 'ch09' AND state = 'sent'
	      HAVING count(*) = 180"
	# let the hanging transfer of this round time out before the next
	sleep $((TIMEOUT + 1))
}

set_concurrency() {
	q -c "ALTER SYSTEM SET metric_anomaly.alert_concurrency = $1" -c "SELECT pg_reload_conf()" >/dev/null
	sleep 1
}

set_concurrency 16
concurrent=$(round)
set_concurrency 1
serial=$(round)
echo "200 alerts to 10 channels, one never answering (alert_timeout ${TIMEOUT}s):"
echo "  alert_concurrency = 16: the nine answering channels have all 180 sent after ${concurrent} ms"
echo "  alert_concurrency = 1:  the nine answering channels have all 180 sent after ${serial} ms"
echo "  (both from the commit of the alerts, including up to 1 s until the worker's next look at the table;"
echo "   the hanging channel's 20 wait behind its timeouts either way)"
