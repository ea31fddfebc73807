#!/usr/bin/env bash
# Benchmark (not a test): what the worker costs the writers.  pgbench inserts
# events from C clients for T seconds into a database without the worker,
# then, on a fresh copy of the same database, with the worker folding every
# second; the order alternates over ROUNDS and each side's best round counts.
# Prints inserts/s, WAL bytes per event (pg_current_wal_lsn() difference over
# the run, checkpoints excluded by a long checkpoint_timeout) and the backlog
# left when pgbench ends.
#
#   [ROUNDS=1] [CLIENTS=8] [SECONDS=60] test/bench/writer.sh
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
. "$here/test/common.sh"
C="${CLIENTS:-8}"
T="${SECONDS_RUN:-${SECONDS_ARG:-60}}"
[ -n "${1:-}" ] && T="$1"
ROUNDS="${ROUNDS:-1}"
build_and_install "$here" >/dev/null

start_cluster 55434 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
metric_anomaly.interval = 1
shared_buffers = '256MB'
max_wal_size = '8GB'
checkpoint_timeout = '1h'
synchronous_commit = on"

script="$PGDATA_DIR/insert.sql"
cat >"$script" <<'SQL'
\set u random(1, 100000)
INSERT INTO metric_anomaly.business_events (event_type, payload)
VALUES ((ARRAY['user_registration','order_created','payment_succeeded','login',
               'search','add_to_cart','checkout_started','api_error'])[1 + :u % 8],
        jsonb_build_object('user_id', :u, 'amount', (:u % 500) / 10.0));
SQL
chmod 644 "$script"

# run DB WITH_WORKER: prints "events inserts_per_s wal_bytes_per_event backlog"
run() {
	local db="$1" with="$2" lsn0 lsn1 n0 n1 out tps backlog
	q -d postgres -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1
	q -d postgres -c "CREATE DATABASE $db"
	q -d "$db" -c "CREATE EXTENSION metric_anomaly"
	if [ "$with" = 1 ]; then
		q -d "$db" -At -c "SELECT metric_anomaly.start_worker()" >/dev/null
		sleep 2
	fi
	q -d postgres -c CHECKPOINT
	lsn0=$(q -d "$db" -At -c "SELECT pg_current_wal_lsn()")
	out=$("${RUN_AS[@]}" env PGHOST="$PGHOST" PGPORT="$PGPORT" pgbench -n -U postgres \
		-c "$C" -j 2 -T "$T" -f "$script" "$db" 2>&1)
	lsn1=$(q -d "$db" -At -c "SELECT pg_current_wal_lsn()")
	backlog=$(q -d "$db" -At -c "SELECT pending_events FROM metric_anomaly.worker_status")
	n1=$(q -d "$db" -At -c "SELECT count(*) FROM metric_anomaly.business_events")
	tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
	if [ "$with" = 1 ]; then
		q -d "$db" -At -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		                    WHERE backend_type LIKE 'metric_anomaly%' AND datname = '$db'" >/dev/null
	fi
	wal=$(q -d "$db" -At -c "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
	echo "$n1 $tps $(awk -v w="$wal" -v n="$n1" 'BEGIN { printf "%.0f", w / n }') $backlog"
}

best_without="" best_with=""
for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) -eq 1 ]; then
		a=$(run bench_off 0); b=$(run bench_on 1)
	else
		b=$(run bench_on 1); a=$(run bench_off 0)
	fi
	echo "round $round: without worker: events inserts/s WAL-bytes/event backlog = $a"
	echo "round $round: with worker:    events inserts/s WAL-bytes/event backlog = $b"
	if [ -z "$best_without" ] || awk -v x="$a" -v y="$best_without" 'BEGIN { split(x, p, " "); split(y, q, " "); exit !(p[2] > q[2]) }'; then best_without="$a"; fi
	if [ -z "$best_with" ] || awk -v x="$b" -v y="$best_with" 'BEGIN { split(x, p, " "); split(y, q, " "); exit !(p[2] > q[2]) }'; then best_with="$b"; fi
done
interval_events=$(awk -v b="$best_with" 'BEGIN { split(b, p, " "); printf "%.0f", p[2] }')
awk -v a="$best_without" -v b="$best_with" -v c="$C" -v t="$T" 'BEGIN {
	split(a, x, " "); split(b, y, " ")
	printf "pgbench: %d clients, %d s, one INSERT per transaction\n", c, t
	printf "without worker: %9.0f inserts/s  %6d WAL bytes/event\n", x[2], x[3]
	printf "with worker:    %9.0f inserts/s  %6d WAL bytes/event  backlog at end %d events (%.2f intervals)\n", y[2], y[3], y[4], y[4] / y[2]
	printf "throughput with/without: %.3f (target >= 0.95); WAL with/without: %.3f (target <= 1.10)\n", y[2] / x[2], y[3] / x[3]
	printf "TABLE|writer throughput, %d clients %d s|%.0f/s with worker|%.0f/s without|%.3f (>= 0.95)\n", c, t, y[2], x[2], y[2] / x[2]
	printf "TABLE|writer WAL bytes per event|%d with worker|%d without|%.3f (<= 1.10)\n", y[3], x[3], y[3] / x[3]
	printf "TABLE|backlog when pgbench ends|%d events|%.0f events per 1 s interval|%.2f intervals (< 2)\n", y[4], y[2], y[4] / y[2]
}'
