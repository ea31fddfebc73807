#!/usr/bin/env bash
# Benchmark (not a test): detection on the Numenta Anomaly Benchmark subset
# in ../shared/nab.  Every file is replayed through detect_series() (the
# worker's own detection and alerting code), once with the default settings
# and once with the seed's 3-sigma method, in the same run; the detections
# are scored by ../shared/nab/nab_score.py twice per method: with the firing
# alerts as detections, and with the per-point verdicts.  One configuration
# for every file, no use of the labels.
#
#   test/bench/nab.sh [NAB_DIR]        (default: ../shared/nab of the repo)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
. "$here/test/common.sh"
nab="${1:-$here/../shared/nab}"
[ -d "$nab" ] || nab="$here/../../shared/nab"	# a git worktree one level down
nab="$(cd "$nab" && pwd)"
build_and_install "$here" >/dev/null

start_cluster 55437 "shared_preload_libraries = 'metric_anomaly'
metric_anomaly.database = 'no_such_database'
${NAB_CONF:-}"
q -d postgres -c "CREATE EXTENSION metric_anomaly"

out="$(mktemp -d /tmp/ma_nab.XXXXXX)"
chmod 777 "$out"
trap 'stop_cluster; rm -rf "$out"' EXIT
# NAB_SETTINGS (jsonb) replaces the default settings, to explore; the
# figures README reports are those of the defaults.
robust_settings="${NAB_SETTINGS:-}"
[ -n "$robust_settings" ] || robust_settings='{}'
declare -A settings=([robust]="$robust_settings" [sigma]='{"method": "3-sigma"}')

cd "$nab/data"
for f in */*.csv; do
	for m in robust sigma; do
		for kind in alerts points; do mkdir -p "$out/${m}_$kind/$(dirname "$f")"; chmod 777 "$out/${m}_$kind" "$out/${m}_$kind/$(dirname "$f")"; done
		cp "$f" "$out/in.csv"; chmod 644 "$out/in.csv"
		q -d postgres <<SQL
SET timezone = 'UTC';
CREATE TEMP TABLE s (i serial, ts timestamp, value float8);
\copy s (ts, value) FROM '$out/in.csv' CSV HEADER
CREATE TEMP TABLE d AS
SELECT r.* FROM metric_anomaly.detect_series(
         (SELECT array_agg(ts::timestamptz ORDER BY i) FROM s),
         (SELECT array_agg(value ORDER BY i) FROM s), '${settings[$m]}') r;
\copy (SELECT to_char(ts, 'YYYY-MM-DD HH24:MI:SS') AS "timestamp", (alert IS NOT DISTINCT FROM 'firing')::int AS flag FROM d ORDER BY n) TO '$out/${m}_alerts/$f' CSV HEADER
\copy (SELECT to_char(ts, 'YYYY-MM-DD HH24:MI:SS') AS "timestamp", coalesce(is_anomaly, false)::int AS flag FROM d ORDER BY n) TO '$out/${m}_points/$f' CSV HEADER
SQL
	done
done

cd "$nab"
printf '%-28s %9s %9s %9s %6s %6s %6s %10s\n' detections standard low_FP low_FN TP FN FP FP/10k
for d in robust_alerts robust_points sigma_alerts sigma_points; do
	python3 nab_score.py "$out/$d" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
s, c = j["scores"], j["counts"]
names = {"robust_alerts": "default, alerts", "robust_points": "default, per point",
         "sigma_alerts": "3-sigma, alerts", "sigma_points": "3-sigma, per point"}
print("%-28s %9.2f %9.2f %9.2f %6d %6d %6d %10.1f" % (names[sys.argv[1]],
    s["standard"]["score"], s["reward_low_FP_rate"]["score"], s["reward_low_FN_rate"]["score"],
    c["tp_windows"], c["fn_windows"], c["fp_flags"], c["fp_per_10k"]))
' "$d"
done
