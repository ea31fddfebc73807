# The alerting part of `make demo`; sourced by test/demo.sh (after
# test/common.sh, with q and $here defined).
#
#   alert_demo_start DB OUTDIR  starts test/receiver.pl on 127.0.0.1, adds a
#                               webhook channel carrying the chart, starts
#                               the delivery worker (before events arrive)
#   alert_demo_show DB OUTDIR METRIC [PNG]
#                               waits for the deliveries, shows their status,
#                               and the JSON and chart of METRIC's last firing
#                               alert as the receiver got them (the chart to
#                               OUTDIR/PNG, default alert_chart.png)

alert_demo_start() {
	local db="$1" dir="$2/receiver" port=""
	rm -rf "$dir"
	mkdir -p "$dir"
	echo 200 >"$dir/script"
	perl "$here/test/receiver.pl" "$dir" 0 &
	ALERT_RECEIVER_PID=$!
	for _ in $(seq 1 50); do
		[ -s "$dir/port" ] && break
		sleep 0.1
	done
	port="$(cat "$dir/port")"
	trap 'kill "$ALERT_RECEIVER_PID" 2>/dev/null || true; stop_cluster' EXIT
	q -d "$db" -c "INSERT INTO metric_anomaly.alert_channels (name, kind, url, options)
	               VALUES ('demo-receiver', 'webhook', 'http://127.0.0.1:$port/alerts', '{\"chart\": true}')"
	# The demo loads a past day at once: alert on its last 150 minutes (the
	# collapse is 2 hours ago), not only on the last hour as by default.
	q -d "$db" -c "ALTER SYSTEM SET metric_anomaly.alert_max_age = '150min'" -c "SELECT pg_reload_conf()" >/dev/null
	q -d "$db" -At -c "SELECT metric_anomaly.start_delivery_worker()" >/dev/null
	echo "receiver listening on 127.0.0.1:$port, recording into $dir"
}

alert_demo_show() {
	local db="$1" dir="$2/receiver" metric="$3" png="$2/${4:-alert_chart.png}" first="" f
	for _ in $(seq 1 90); do
		[ "$(q -d "$db" -At -c "SELECT count(*) > 0 AND bool_and(state IN ('sent', 'dead'))
		                          FROM metric_anomaly.deliveries")" = "t" ] && break
		sleep 1
	done
	q -d "$db" -c "SELECT alert_id, metric_name, to_char(minute, 'HH24:MI') AS minute, alert_state,
	                      source, channel, state, attempts, http_status
	                 FROM metric_anomaly.delivery_status ORDER BY alert_id"
	for f in "$dir"/req-*.body; do
		[ -e "$f" ] || continue
		grep -q "\"metric\":\"$metric\".*\"state\":\"firing\"" "$f" && first="$f"
	done
	if [ -z "$first" ]; then
		echo "no firing alert of $metric arrived"
		return
	fi
	echo "the last firing alert of $metric as the receiver got it ($(ls "$dir"/req-*.body | wc -l) requests in $dir):"
	sed -n '1p' "${first%.body}.head"
	grep -i '^idempotency-key' "${first%.body}.head" || true
	perl -ne 's/("chart_png_base64":")([^"]{40})[^"]*"/$1$2..."/; print "$_\n"' "$first"
	perl -MMIME::Base64 -ne 'print decode_base64($1) if /"chart_png_base64":"([^"]+)"/' "$first" \
		>"$png"
	if [ -s "$png" ]; then
		echo "wrote the attached chart to $png ($(wc -c <"$png") bytes)"
	fi
}
