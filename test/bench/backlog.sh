#!/usr/bin/env bash
# Benchmark (not a test): a backlog of N events (default 10,000,000) drains
# completely under the worker, whose resident memory is sampled every 0.2 s
# from /proc throughout.  Prints the drain time and the peak of VmRSS (which
# includes the shared buffers the worker touched) and of RssAnon (its own
# private memory).
#
#   test/bench/backlog.sh [N]
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
. "$here/test/common.sh"
N="${1:-10000000}"
build_and_install "$here" >/dev/null

start_cluster 55435 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'backlog'
metric_anomaly.interval = 1
shared_buffers = '128MB'
max_wal_size = '8GB'
checkpoint_timeout = '30min'"

q -d postgres -c "CREATE DATABASE backlog"
# The extension exists but the worker is kept from folding while the
# backlog is loaded: the load runs in one transaction, invisible until it
# commits.
q -d backlog -c "CREATE EXTENSION metric_anomaly"
echo "loading $N events ..."
t0=$(date +%s%N)
q -d backlog -c "
	INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
	SELECT (ARRAY['user_registration','order_created','payment_succeeded','login',
	              'search','add_to_cart','checkout_started','api_error'])[1 + i % 8],
	       now() - interval '1 day' + (i * 86400.0 / $N) * interval '1 second',
	       jsonb_build_object('user_id', i % 100000)
	  FROM generate_series(1, $N) AS i"
t1=$(date +%s%N)
pid=""
until [ -n "$pid" ]; do
	pid=$(q -d backlog -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'metric_anomaly worker'")
	sleep 0.2
done
peak_rss=0 peak_anon=0
while :; do
	if [ -r /proc/$pid/status ]; then
		rss=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)
		anon=$(awk '/^RssAnon:/ { print $2 }' /proc/$pid/status)
		[ "${rss:-0}" -gt "$peak_rss" ] && peak_rss=$rss
		[ "${anon:-0}" -gt "$peak_anon" ] && peak_anon=$anon
	fi
	left=$(q -d backlog -At -c "SELECT pending_events FROM metric_anomaly.worker_status")
	[ "$left" = 0 ] && break
	sleep 0.2
done
t2=$(date +%s%N)
counted=$(q -d backlog -At -c "SELECT sum(sample_count) FROM metric_anomaly.aggregated_metrics")
awk -v n="$N" -v c="$counted" -v l="$(( (t1 - t0) / 1000000 ))" -v d="$(( (t2 - t1) / 1000000 ))" \
	-v r="$peak_rss" -v a="$peak_anon" 'BEGIN {
	printf "backlog: %d events (load %.1f s), drained in %.1f s (%.0f events/s), counted %d\n", n, l / 1000, d / 1000, n / (d / 1000), c
	printf "worker peak VmRSS %.1f MB (shared buffers included), peak RssAnon %.1f MB\n", r / 1024, a / 1024
	# The target is on the memory the worker owns (RssAnon); VmRSS also
	# counts every page of shared_buffers (128 MB here) the worker touched.
	printf "TABLE|%d-event backlog drains|%.1f s, peak private RSS %.1f MB|VmRSS %.1f MB incl. shared buffers|%s\n", n, d / 1000, a / 1024, r / 1024, (c == n && a < 102400) ? "drained exactly, private < 100 MB" : "NOT met"
}'
