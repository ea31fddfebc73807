#!/usr/bin/env bash
# Benchmark (not a test): the heatmap aggregate against seaborn
# (../shared/reference/peer_charts.py heatmap) on the same 20,000 latency
# samples (5 app versions x 6 endpoints), in the same run, two paths:
#  - the same work per chart on both sides: the p95 of every cell from the
#    raw samples, then the PNG.  Ours is the heatmap aggregate's sample form
#    (one pass over the rows in C, exact quantiles by selection, equal to
#    percentile_cont's); seaborn's is pandas' pivot_table quantile.  For
#    reference, the same in SQL: percentile_cont per cell, then the
#    aggregate's one-row-per-cell form;
#  - the product's path: the samples folded once (process_pending) into the
#    per-minute sketches of a quantile definition, and render_heatmap
#    merging them per chart, as a scheduled report does.
# And where our raw-sample time goes: the scan alone (count() of the
# samples), the drawing and PNG alone (the 30 cells precomputed).
#
#   test/bench/heatmap.sh [N] [ROUNDS]
#       N renders per round on our side (default 200), N/25 (at least 5)
#       for seaborn; ROUNDS alternating rounds (default 3), best counts
#
# Installs Debian's python3-seaborn when missing, builds and installs the
# extension, and runs a throwaway cluster as an unprivileged user.  Writes
# both PNGs to test/tmp/bench_heatmap_{ours,seaborn}.png.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$here/test/setup.sh" python3-matplotlib python3-seaborn python3-pandas bc xxd >/dev/null
. "$here/test/common.sh"
build_and_install "$here" >/dev/null
N="${1:-200}"
ROUNDS="${2:-3}"
NPEER=$(( N / 25 < 5 ? 5 : N / 25 ))
TICKS=$(getconf CLK_TCK)
# ../shared/reference beside the repository (or beside a worktree's parent)
peer="${PEER_CHARTS:-$here/../shared/reference/peer_charts.py}"
[ -f "$peer" ] || peer="$here/../../shared/reference/peer_charts.py"
[ -f "$peer" ] || { echo "missing peer_charts.py (set PEER_CHARTS)" >&2; exit 1; }

python=python3
if ! "$python" -c 'import seaborn' 2>/dev/null; then
	python=/usr/bin/python3
	"$python" -c 'import seaborn' 2>/dev/null ||
		{ echo "seaborn is missing: apt-get install -y python3-seaborn" >&2; exit 1; }
fi

work="$(mktemp -d /tmp/ma_bench_heatmap.XXXXXX)"
chmod 755 "$work"
port=55436
cleanup() {
	"${RUN_AS[@]}" pg_ctl -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] && chown "$RUN_USER" "$work"

# The reference samples: peer_charts.py's own default data, as CSV.
"$python" - "$peer" "$work/samples.csv" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("peer", sys.argv[1])
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
df = peer.heat_data(None)
df.to_csv(sys.argv[2], header=False, index=False)
PY
chmod 644 "$work/samples.csv"

"${RUN_AS[@]}" initdb -D "$work/data" -A trust >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
CONF
"${RUN_AS[@]}" pg_ctl -D "$work/data" -o "-p $port -k $work -c timezone=UTC" \
	-l "$work/log" -w start >/dev/null
q() { "${RUN_AS[@]}" psql -X -q -h "$work" -p $port -d postgres -v ON_ERROR_STOP=1 "$@"; }

q -f - <<SQL
CREATE EXTENSION metric_anomaly;
CREATE TABLE samples (app_version text, endpoint text, latency_ms float8);
\\copy samples FROM '$work/samples.csv' WITH (FORMAT csv)
VACUUM ANALYZE samples;
-- The product's path: the samples as events, folded once by a pass into
-- per-minute sketches of a quantile definition; render_heatmap merges them.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile, dimensions)
VALUES ('api_latency', '{api}', 'quantile', '{latency_ms}', 0.95, '{app_version,endpoint}');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'api', '2026-11-20 00:00+00'::timestamptz + (row_number() OVER () % 900) * interval '1 second',
       jsonb_build_object('app_version', app_version, 'endpoint', endpoint, 'latency_ms', latency_ms)
  FROM samples;
SELECT metric_anomaly.process_pending('2026-11-20 00:20+00') IS NOT NULL AS folded;
CREATE FUNCTION heat_stored() RETURNS bytea LANGUAGE sql AS \$\$
    SELECT metric_anomaly.render_heatmap('api_latency', 'app_version', 'endpoint',
                                         '2026-11-20 00:00+00', '2026-11-20 00:15+00')
\$\$;
CREATE FUNCTION heat() RETURNS bytea LANGUAGE sql AS \$\$
    SELECT metric_anomaly.heatmap(app_version, endpoint, latency_ms, 0.95,
               '{"title": "API Latency P95 (ms) Heatmap", "x_label": "API Endpoint",
                 "y_label": "App Version", "value_label": "p95 (ms)"}')
      FROM samples
\$\$;
CREATE FUNCTION heat_sql() RETURNS bytea LANGUAGE sql AS \$\$
    SELECT metric_anomaly.heatmap(app_version, endpoint, p95,
               '{"title": "API Latency P95 (ms) Heatmap", "x_label": "API Endpoint",
                 "y_label": "App Version", "value_label": "p95 (ms)"}')
      FROM (SELECT app_version, endpoint,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
              FROM samples GROUP BY 1, 2) c
\$\$;
-- The parts of heat(): the scan, and the drawing of the cells it computes.
CREATE TABLE cells AS
SELECT app_version, endpoint, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
  FROM samples GROUP BY 1, 2;
VACUUM ANALYZE cells;
CREATE FUNCTION heat_scan() RETURNS bytea LANGUAGE sql AS \$\$
    SELECT count(latency_ms)::text::bytea FROM samples
\$\$;
CREATE FUNCTION heat_draw() RETURNS bytea LANGUAGE sql AS \$\$
    SELECT metric_anomaly.heatmap(app_version, endpoint, p95,
               '{"title": "API Latency P95 (ms) Heatmap", "x_label": "API Endpoint",
                 "y_label": "App Version", "value_label": "p95 (ms)"}')
      FROM cells
\$\$;
SELECT heat() = heat_sql() AS "sample form equals percentile_cont";
SQL

# Ours: N charts in one session after a warm-up (plan, fonts); the PNGs are
# produced and measured, not sent to the client.  Prints "ms bytes cpu_ms":
# wall time, and the backend's CPU time (user + system, from /proc, in
# clock ticks) per chart, which the other helpers' load disturbs less.
ours_round() {
	local fn="$1"
	q -At -c "
CREATE FUNCTION pg_temp.cpu_ticks() RETURNS bigint LANGUAGE sql AS
\$f\$ SELECT f[12]::bigint + f[13]::bigint
      FROM string_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') f \$f\$;
DO \$\$
DECLARE
    t0 timestamptz;
    c0 bigint;
    total bigint;
BEGIN
    PERFORM $fn();
    c0 := pg_temp.cpu_ticks();
    t0 := clock_timestamp();
    SELECT sum(length($fn())) INTO total FROM generate_series(1, $N);
    PERFORM set_config('bench.ms', (extract(epoch FROM clock_timestamp() - t0) * 1000 / $N)::text, false);
    PERFORM set_config('bench.cpu', ((pg_temp.cpu_ticks() - c0) * 1000.0 / $TICKS / $N)::text, false);
    PERFORM set_config('bench.bytes', (total / $N)::text, false);
END
\$\$;
SELECT round(current_setting('bench.ms')::numeric, 3) || ' ' || current_setting('bench.bytes')
       || ' ' || round(current_setting('bench.cpu')::numeric, 3);" | tail -1
}

# seaborn: the same CSV, its own timing loop (after a warm-up).
peer_round() {
	"$python" "$peer" heatmap --csv "$work/samples.csv" --n "$NPEER" \
		--out "$here/test/tmp/bench_heatmap_seaborn.png"
}

# Rounds alternate between the sides; each path's best round counts.
mkdir -p "$here/test/tmp"
declare -A best bytes cpu
better() { [ -z "$2" ] || [ "$(echo "$1 < $2" | bc)" = 1 ]; }
keep() {	# keep NAME "MS BYTES [CPU_MS]"
	local ms bytes_ cpu_
	read -r ms bytes_ cpu_ <<< "$2"
	if better "$ms" "${best[$1]:-}"; then best[$1]=$ms; fi
	if [ -n "$cpu_" ] && better "$cpu_" "${cpu[$1]:-}"; then cpu[$1]=$cpu_; fi
	bytes[$1]=$bytes_
}
for round in $(seq 1 "$ROUNDS"); do
	line="round $round:"
	for fn in heat heat_sql heat_stored heat_scan heat_draw; do
		out=$(ours_round $fn)
		keep $fn "$out"
		line="$line $fn ${out%% *} ms,"
	done
	peer_out=$(peer_round)
	ms=$(echo "$peer_out" | sed -n 's/.*matplotlib_ms_per_chart=\([0-9.]*\).*/\1/p')
	keep seaborn "$ms $(echo "$peer_out" | sed -n 's/.*png_bytes=\([0-9]*\).*/\1/p')"
	echo "$line seaborn $ms ms"
done

q -At -c "SELECT encode(heat(), 'hex')" | xxd -r -p > "$here/test/tmp/bench_heatmap_ours.png"
q -At -c "SELECT encode(heat_stored(), 'hex')" | xxd -r -p > "$here/test/tmp/bench_heatmap_stored.png"

ratio() { echo "scale=1; ${best[seaborn]} / $1" | bc; }
echo "samples: 20000, 5 x 6 cells, p95 per cell, 1200x600 PNG; best of $ROUNDS rounds of $N renders (seaborn $NPEER)"
printf "from the raw samples:\n"
printf "  heatmap(app_version, endpoint, latency_ms, 0.95, ...), exact: %8.3f ms per chart, %6d bytes  %6sx\n" \
	"${best[heat]}" "${bytes[heat]}" "$(ratio "${best[heat]}")"
printf "  percentile_cont per cell in SQL, then heatmap of the cells:  %8.3f ms per chart, %6d bytes  %6sx\n" \
	"${best[heat_sql]}" "${bytes[heat_sql]}" "$(ratio "${best[heat_sql]}")"
printf "  seaborn (pandas pivot_table quantile, sns.heatmap):          %8.3f ms per chart, %6d bytes\n" \
	"${best[seaborn]}" "${bytes[seaborn]}"
printf "from the worker's stored per-minute sketches:\n"
printf "  render_heatmap(...):                                         %8.3f ms per chart, %6d bytes  %6sx\n" \
	"${best[heat_stored]}" "${bytes[heat_stored]}" "$(ratio "${best[heat_stored]}")"
printf "where the raw-sample time goes (backend CPU per chart, best round): all %.3f ms = scan (count of the samples) %.3f ms + drawing and PNG of the 30 cells %.3f ms + aggregation and quantiles %.3f ms\n" \
	"${cpu[heat]}" "${cpu[heat_scan]}" "${cpu[heat_draw]}" "$(echo "${cpu[heat]} - ${cpu[heat_scan]} - ${cpu[heat_draw]}" | bc)"
printf "  (CPU per chart: percentile_cont path %.3f ms, render_heatmap %.3f ms)\n" "${cpu[heat_sql]}" "${cpu[heat_stored]}"
echo "ratio: $(ratio "${best[heat]}")x faster than seaborn from the raw samples, $(ratio "${best[heat_stored]}")x with the worker's stored state"
printf "TABLE|heatmap 1200x600, 20000 samples, p95 raw|%.3f ms|seaborn %.3f ms|%sx\n" "${best[heat]}" "${best[seaborn]}" "$(ratio "${best[heat]}")"
printf "TABLE|render_heatmap from stored sketches|%.3f ms|seaborn %.3f ms|%sx\n" "${best[heat_stored]}" "${best[seaborn]}" "$(ratio "${best[heat_stored]}")"
echo "images: $here/test/tmp/bench_heatmap_ours.png $here/test/tmp/bench_heatmap_stored.png $here/test/tmp/bench_heatmap_seaborn.png"
