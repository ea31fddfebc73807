#!/usr/bin/env bash
# Benchmark (not a test): the heatmap aggregate against seaborn
# (../shared/reference/peer_charts.py heatmap) on the same 20,000 latency
# samples (5 app versions x 6 endpoints), in the same run.  Both sides do
# the same work per chart: the p95 of every cell from the raw samples
# (percentile_cont; pandas' quantile), then the annotated heatmap as PNG.
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
peer="$(cd "$(dirname "$0")" && pwd)/../../../shared/reference/peer_charts.py"
[ -f "$peer" ] || { echo "missing $peer" >&2; exit 1; }

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
CREATE FUNCTION heat() RETURNS bytea LANGUAGE sql AS \$\$
    SELECT metric_anomaly.heatmap(app_version, endpoint, p95,
               '{"title": "API Latency P95 (ms) Heatmap", "x_label": "API Endpoint",
                 "y_label": "App Version", "value_label": "p95 (ms)"}')
      FROM (SELECT app_version, endpoint,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95
              FROM samples GROUP BY 1, 2) c
\$\$;
SQL

# Ours: N charts in one session after a warm-up (plan, fonts); the PNGs are
# produced and measured, not sent to the client.
ours_round() {
	q -At -c "
DO \$\$
DECLARE
    t0 timestamptz;
    total bigint;
BEGIN
    PERFORM heat();
    t0 := clock_timestamp();
    SELECT sum(length(heat())) INTO total FROM generate_series(1, $N);
    PERFORM set_config('bench.ms', (extract(epoch FROM clock_timestamp() - t0) * 1000 / $N)::text, false);
    PERFORM set_config('bench.bytes', (total / $N)::text, false);
END
\$\$;
SELECT round(current_setting('bench.ms')::numeric, 3) || ' ' || current_setting('bench.bytes');"
}

# seaborn: the same CSV, its own timing loop (after a warm-up).
peer_round() {
	"$python" "$peer" heatmap --csv "$work/samples.csv" --n "$NPEER" \
		--out "$here/test/tmp/bench_heatmap_seaborn.png"
}

# Rounds alternate between the two; each side's best round counts.
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
	echo "round $round: heatmap ${ours% *} ms, seaborn $ms ms"
done

q -At -c "SELECT encode(heat(), 'hex')" | xxd -r -p > "$here/test/tmp/bench_heatmap_ours.png"

ratio="$(echo "scale=1; $peer_ms / $ours_ms" | bc)"
echo "samples: 20000, 5 x 6 cells, p95 per cell from the raw samples, 1200x600 PNG"
printf "heatmap aggregate: %8.3f ms per chart (best of %d rounds of %d, %d bytes)\n" "$ours_ms" "$ROUNDS" "$N" "$ours_bytes"
printf "seaborn:           %8.3f ms per chart (best of %d rounds of %d, %d bytes)\n" "$peer_ms" "$ROUNDS" "$NPEER" "$peer_bytes"
echo "ratio: ${ratio}x faster than seaborn"
printf "TABLE|heatmap 1200x600, 20000 samples, p95|%.3f ms|seaborn %.3f ms|%sx\n" "$ours_ms" "$peer_ms" "$ratio"
echo "images: $here/test/tmp/bench_heatmap_ours.png $here/test/tmp/bench_heatmap_seaborn.png"
