#!/usr/bin/env bash
# Benchmark (not a test): render_metric_chart() against matplotlib
# (../shared/reference/peer_charts.py line) on the same 1,440-point series,
# in the same run.
#
#   test/bench/chart.sh [N] [ROUNDS]
#       N renders per round on our side (default 500), N/25 (at least 10)
#       for matplotlib; ROUNDS alternating rounds (default 3), best counts
#
# Installs Debian's python3-matplotlib when missing, builds and installs the
# extension, and runs a throwaway cluster as an unprivileged user.  Writes
# both PNGs to test/tmp/bench_chart_{ours,matplotlib}.png.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$here/test/setup.sh" python3-matplotlib bc xxd >/dev/null
. "$here/test/common.sh"
build_and_install "$here" >/dev/null
N="${1:-500}"
ROUNDS="${2:-3}"
NPEER=$(( N / 25 < 10 ? 10 : N / 25 ))
# ../shared next to the repository, or next to the worktrees' folder
peer="${PEER_CHARTS:-$here/../shared/reference/peer_charts.py}"
[ -f "$peer" ] || peer="$here/../../shared/reference/peer_charts.py"
[ -f "$peer" ] || { echo "missing peer_charts.py (set PEER_CHARTS)" >&2; exit 1; }

python=python3
if ! "$python" -c 'import matplotlib' 2>/dev/null; then
	python=/usr/bin/python3
	"$python" -c 'import matplotlib' 2>/dev/null ||
		{ echo "matplotlib is missing: apt-get install -y python3-matplotlib" >&2; exit 1; }
fi

work="$(mktemp -d /tmp/ma_bench_chart.XXXXXX)"
chmod 755 "$work"
port=55434
cleanup() {
	"${RUN_AS[@]}" pg_ctl -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] && chown "$RUN_USER" "$work"

# The reference series: peer_charts.py's own default data, as CSV.
"$python" - "$peer" "$work/series.csv" <<'EOF'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("peer", sys.argv[1])
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
ts, vals, anom = peer.line_data(None)
with open(sys.argv[2], "w") as f:
    for t, v, a in zip(ts, vals, anom):
        f.write(f"{t.isoformat(sep=' ')},{v!r},{int(a)}\n")
EOF
chmod 644 "$work/series.csv"

"${RUN_AS[@]}" initdb -D "$work/data" -A trust >/dev/null
# The library must be preloaded; its worker serves no database here.
cat >> "$work/data/postgresql.conf" <<CONF
shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
CONF
"${RUN_AS[@]}" pg_ctl -D "$work/data" -o "-p $port -k $work -c timezone=UTC" \
	-l "$work/log" -w start >/dev/null
q() { "${RUN_AS[@]}" psql -X -q -h "$work" -p $port -d postgres -v ON_ERROR_STOP=1 "$@"; }

# Load it as one metric's minutes, with the evidence detection would store
# (3 sigma over the previous 180 minutes, from 90 minutes of history on).
q -f - <<SQL
CREATE EXTENSION metric_anomaly;
CREATE TEMP TABLE raw (ts timestamp, v float8, a int);
\\copy raw FROM '$work/series.csv' WITH (FORMAT csv)
INSERT INTO metric_anomaly.series (metric_name, filled_until)
VALUES ('user_registrations', '2026-11-21 00:00+00');
INSERT INTO metric_anomaly.aggregated_metrics
    (metric_name, metric_timestamp, metric_value, sample_count, is_anomaly, anomaly_context, needs_eval)
SELECT 'user_registrations', ts AT TIME ZONE 'UTC', v, 1, a = 1,
       CASE WHEN n >= 90 THEN jsonb_build_object('method', '3-sigma', 'mean', m, 'std_dev', sd,
            'upper_boundary', m + 3 * sd, 'lower_boundary', m - 3 * sd, 'sigma', 3, 'window', n) END,
       false
  FROM (SELECT ts, v, a, count(*) OVER w AS n, avg(v) OVER w AS m, stddev_pop(v) OVER w AS sd
          FROM raw WINDOW w AS (ORDER BY ts ROWS BETWEEN 180 PRECEDING AND 1 PRECEDING)) s;
VACUUM ANALYZE metric_anomaly.aggregated_metrics;
SQL

# Ours: N renders by one query in one session, after one warm-up (plan,
# fonts); the PNGs are produced and measured, not sent to the client.
ours_round() {
	q -At -c "
DO \$\$
DECLARE
    t0 timestamptz;
    total bigint;
BEGIN
    PERFORM metric_anomaly.render_metric_chart('user_registrations', '2026-11-20 00:00+00', '2026-11-21 00:00+00');
    t0 := clock_timestamp();
    SELECT sum(length(metric_anomaly.render_metric_chart('user_registrations',
                      '2026-11-20 00:00+00', '2026-11-21 00:00+00')))
      INTO total FROM generate_series(1, $N);
    PERFORM set_config('bench.ms', (extract(epoch FROM clock_timestamp() - t0) * 1000 / $N)::text, false);
    PERFORM set_config('bench.bytes', (total / $N)::text, false);
END
\$\$;
SELECT round(current_setting('bench.ms')::numeric, 3) || ' ' || current_setting('bench.bytes');"
}

# matplotlib: the same CSV, its own timing loop (after a warm-up).
peer_round() {
	"$python" "$peer" line --csv "$work/series.csv" --n "$NPEER" \
		--out "$here/test/tmp/bench_chart_matplotlib.png"
}

# Rounds alternate between the two; each side's best round counts, so that
# a busy machine penalises neither.
mkdir -p "$here/test/tmp"
ours_ms="" peer_ms=""
for round in $(seq 1 "$ROUNDS"); do
	ours=$(ours_round)
	ms=${ours% *}
	ours_bytes=${ours#* }
	if [ -z "$ours_ms" ] || [ "$(echo "$ms < $ours_ms" | bc)" = 1 ]; then ours_ms=$ms; fi
	peer_out=$(peer_round)
	ms=$(echo "$peer_out" | sed -n 's/.*matplotlib_ms_per_chart=\([0-9.]*\).*/\1/p')
	peer_bytes=$(echo "$peer_out" | sed -n 's/.*png_bytes=\([0-9]*\).*/\1/p')
	if [ -z "$peer_ms" ] || [ "$(echo "$ms < $peer_ms" | bc)" = 1 ]; then peer_ms=$ms; fi
	echo "round $round: render_metric_chart ${ours% *} ms, matplotlib $ms ms"
done

q -At -c "SELECT encode(metric_anomaly.render_metric_chart('user_registrations',
          '2026-11-20 00:00+00', '2026-11-21 00:00+00'), 'hex')" |
	xxd -r -p > "$here/test/tmp/bench_chart_ours.png"

echo "series: 1440 points, 1200x600 PNG"
printf "render_metric_chart: %8.3f ms per chart (best of %d rounds of %d renders, %d bytes)\n" "$ours_ms" "$ROUNDS" "$N" "$ours_bytes"
printf "matplotlib:          %8.3f ms per chart (best of %d rounds of %d renders, %d bytes)\n" "$peer_ms" "$ROUNDS" "$NPEER" "$peer_bytes"
echo "ratio: $(echo "scale=1; $peer_ms / $ours_ms" | bc)x faster than matplotlib"
printf "TABLE|chart 1200x600, 1440 points|%.3f ms|matplotlib %.3f ms|%sx\n" "$ours_ms" "$peer_ms" "$(echo "scale=1; $peer_ms / $ours_ms" | bc)"
echo "images: $here/test/tmp/bench_chart_ours.png $here/test/tmp/bench_chart_matplotlib.png"
