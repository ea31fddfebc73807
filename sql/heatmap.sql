-- Heatmaps: the heatmap aggregate and render_heatmap.  Pixels are decoded
-- by test/png_probe.c (libgd, not our encoder) at coordinates computed from
-- the grid mapping the PNG carries in its "metric_anomaly.heatmap" tEXt
-- chunk: gx0 gy0 gx1 gy1 nrows ncols vmin vmax.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';
SET extra_float_digits = 0;

\set probe_dir `pwd`/test/tmp
\! mkdir -p test/tmp && cc -O1 -o test/tmp/png_probe test/png_probe.c $(pkg-config --cflags --libs gdlib 2>/dev/null || echo -lgd)
SELECT set_config('chart_test.dir', :'probe_dir', false) IS NOT NULL AS dir_set;

-- "PNG WxH" when b starts with the PNG signature and an IHDR chunk.
CREATE FUNCTION pg_temp.png_info(b bytea) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN substring(b FROM 1 FOR 8) = '\x89504e470d0a1a0a'::bytea
                 AND substring(b FROM 13 FOR 4) = 'IHDR'::bytea
           THEN format('PNG %sx%s',
                (get_byte(b, 16) << 24) | (get_byte(b, 17) << 16) | (get_byte(b, 18) << 8) | get_byte(b, 19),
                (get_byte(b, 20) << 24) | (get_byte(b, 21) << 16) | (get_byte(b, 22) << 8) | get_byte(b, 23))
           ELSE 'not a PNG' END
$$;

-- The value of the tEXt chunk named key.
CREATE FUNCTION pg_temp.png_text(b bytea, key text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_from(substring(b FROM p + length(key) + 1
                                  FOR ((get_byte(b, p - 9) << 24) | (get_byte(b, p - 8) << 16) |
                                       (get_byte(b, p - 7) << 8) | get_byte(b, p - 6)) - length(key) - 1),
                        'LATIN1')
      FROM (SELECT position(('tEXt' || key)::bytea || '\x00'::bytea IN b) + 4 AS p) s
     WHERE p > 4
$$;

CREATE TEMP TABLE probe_out (x int, y int, color text);
-- Colours (rrggbb) of the given pixels, decoded by test/png_probe.
CREATE FUNCTION pg_temp.probe(b bytea, xs int[], ys int[])
RETURNS TABLE (x int, y int, color text)
LANGUAGE plpgsql AS $$
DECLARE
    dir text := current_setting('chart_test.dir');
BEGIN
    TRUNCATE probe_out;
    EXECUTE format('COPY (SELECT encode(%L::bytea, ''hex'')) TO %L', b, dir || '/probe.hex');
    EXECUTE format('COPY (SELECT * FROM unnest(%L::int[], %L::int[])) TO %L',
                   xs, ys, dir || '/probe.coords');
    EXECUTE format('COPY probe_out FROM PROGRAM %L',
                   dir || '/png_probe ' || dir || '/probe.hex ' || dir || '/probe.coords');
    RETURN QUERY SELECT * FROM probe_out;
END
$$;

-- The grid mapping.
CREATE FUNCTION pg_temp.grid(b bytea) RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_to_array(pg_temp.png_text(b, 'metric_anomaly.heatmap'), ' ')::float8[]
$$;

-- Pixels of cell (r, c) (0-based) at fractions fx, fy of its width and
-- height, as chart_heatmap.c splits the grid (integer division).
CREATE FUNCTION pg_temp.cell_px(b bytea, r int, c int, fx float8, fy float8)
RETURNS int[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[(x0 + floor((x1 - 2 - x0) * fx))::int, (y0 + floor((y1 - 2 - y0) * fy))::int]
      FROM (SELECT g[1] + div(((g[3] - g[1]) * c)::numeric, g[6]::numeric) AS x0,
                   g[1] + div(((g[3] - g[1]) * (c + 1))::numeric, g[6]::numeric) AS x1,
                   g[2] + div(((g[4] - g[2]) * r)::numeric, g[5]::numeric) AS y0,
                   g[2] + div(((g[4] - g[2]) * (r + 1))::numeric, g[5]::numeric) AS y1
              FROM (SELECT pg_temp.grid(b) AS g) s) t
$$;

-- Colour of cell (r, c) a quarter in from its top left corner (off its
-- value and its outline).
CREATE FUNCTION pg_temp.cell_color(b bytea, r int, c int, fx float8 DEFAULT 0.25, fy float8 DEFAULT 0.25)
RETURNS text LANGUAGE sql AS $$
    SELECT color FROM pg_temp.probe(b, ARRAY[(pg_temp.cell_px(b, r, c, fx, fy))[1]],
                                       ARRAY[(pg_temp.cell_px(b, r, c, fx, fy))[2]])
$$;

-- Pixels of the middle band of cell (r, c) (where its value is written),
-- counted as near white, near black, or other.
CREATE FUNCTION pg_temp.text_pixels(b bytea, r int, c int, OUT light bigint, OUT dark bigint)
LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE color >= 'e0e0e0' AND substr(color, 1, 2) >= 'e0' AND substr(color, 3, 2) >= 'e0' AND substr(color, 5, 2) >= 'e0'),
           count(*) FILTER (WHERE substr(color, 1, 2) < '50' AND substr(color, 3, 2) < '50' AND substr(color, 5, 2) < '50')
      FROM (SELECT pg_temp.cell_px(b, r, c, 0.3, 0.35) AS a, pg_temp.cell_px(b, r, c, 0.7, 0.65) AS z) s,
           LATERAL pg_temp.probe(b,
               ARRAY(SELECT x FROM generate_series(a[1], z[1]) x, generate_series(a[2], z[2]) y ORDER BY x, y),
               ARRAY(SELECT y FROM generate_series(a[1], z[1]) x, generate_series(a[2], z[2]) y ORDER BY x, y)) p
$$;

-- Three app versions by three endpoints: values 100..800 (one missing),
-- the cell (2.7.1, /feed) outlined.
CREATE TEMP TABLE cells (v text, e text, p float8, anomalous boolean);
INSERT INTO cells VALUES
    ('2.7.1', '/feed', 800, true), ('2.7.1', '/login', 100, false), ('2.7.1', '/pay', 450, false),
    ('2.6.0', '/feed', 200, false), ('2.6.0', '/login', 300, false), ('2.6.0', '/pay', NULL, false),
    ('2.8.0', '/feed', 600, false), ('2.8.0', '/login', 700, false);
CREATE TEMP TABLE h AS
SELECT metric_anomaly.heatmap(v, e, p, anomalous,
           '{"title": "p95 latency", "x_label": "endpoint", "y_label": "app version", "value_label": "ms"}') AS png
  FROM cells;

-- Structure: a 1200x600 PNG, three by three, the scale 100..800.
SELECT pg_temp.png_info(png), (pg_temp.grid(png))[5:8] AS rows_cols_min_max FROM h;
-- Cells sorted (rows 2.6.0, 2.7.1, 2.8.0; columns /feed, /login, /pay):
-- 100 is the scale's first colour, 800 its last, 450 its middle class,
-- the missing cells (2.6.0 /pay given NULL, 2.8.0 /pay never given) grey.
SELECT pg_temp.cell_color(png, 1, 1) AS min_100, pg_temp.cell_color(png, 1, 0) AS max_800,
       pg_temp.cell_color(png, 1, 2) AS mid_450,
       pg_temp.cell_color(png, 0, 2) AS null_cell, pg_temp.cell_color(png, 2, 2) AS absent_cell
  FROM h;
-- The outline: the anomalous cell's edge is blue, another cell's is not.
SELECT pg_temp.cell_color(png, 1, 0, 0.005, 0.5) AS outlined_edge,
       pg_temp.cell_color(png, 1, 1, 0.005, 0.5) AS plain_edge
  FROM h;
-- The values are written light on the dark cell, dark on the pale one.
SELECT (pg_temp.text_pixels(png, 1, 0)).light > 20 AS light_on_dark,
       (pg_temp.text_pixels(png, 1, 0)).dark AS dark_on_dark,
       (pg_temp.text_pixels(png, 1, 1)).dark > 20 AS dark_on_pale,
       (pg_temp.text_pixels(png, 1, 1)).light AS light_on_pale
  FROM h;

-- A size option, one cell (the middle of the scale), no rows (NULL).
SELECT pg_temp.png_info(metric_anomaly.heatmap('a', 'b', 5, '{"width": 400, "height": 300}'));
SELECT pg_temp.cell_color(metric_anomaly.heatmap('a', 'b', 5, NULL), 0, 0) AS single;
SELECT metric_anomaly.heatmap(v, e, p, NULL) IS NULL AS no_rows FROM cells WHERE false;
-- NULL labels are "unknown".
SELECT pg_temp.png_info(metric_anomaly.heatmap(NULL, NULL, 1, NULL));

-- Errors: limits, duplicates, options.
\set VERBOSITY default
SELECT metric_anomaly.heatmap(i::text, 'c', i, NULL) FROM generate_series(1, 51) i;
SELECT metric_anomaly.heatmap('r', i::text, i, NULL) FROM generate_series(1, 51) i;
SELECT metric_anomaly.heatmap(repeat('x', 65), 'c', 1, NULL);
SELECT metric_anomaly.heatmap('r', 'c', i, NULL) FROM generate_series(1, 2) i;
SELECT metric_anomaly.heatmap('r', 'c', 1, '{"width": 50}');
SELECT metric_anomaly.heatmap('r', 'c', 1, '{"colour": "red"}');
SELECT metric_anomaly.heatmap('r', 'c', 1, '{"title": 5}');
SELECT metric_anomaly.heatmap('r', 'c', 1, '[1]');
SELECT metric_anomaly.heatmap(i::text, j::text, i * j, '{"width": 100, "height": 100}')
  FROM generate_series(1, 50) i, generate_series(1, 50) j;
\set VERBOSITY terse

-- The sample form: one row per raw sample, each cell the quantile of its
-- samples, exactly percentile_cont's (the same PNG as percentile_cont per
-- cell drawn by the cell form, bytes and all; the scale's ends equal to the
-- last digit).  Samples with ties, a cell of one sample, a cell of even
-- size; NULL and NaN samples skipped, a cell with only those empty.
CREATE TEMP TABLE samples (v text, e text, ms float8);
INSERT INTO samples
SELECT 'v' || (i % 3), '/e' || (i % 4),
       CASE WHEN i % 3 = 2 AND i % 4 = 1 THEN 1000 + (i * 7919) % 113 ELSE (i * 104729) % 997 / 7.0 END
  FROM generate_series(1, 4000) i
UNION ALL VALUES ('v9', '/e0', 42.5), ('v9', '/e1', 1), ('v9', '/e1', 2), ('v9', '/e2', NULL),
                 ('v9', '/e2', 'NaN'), ('v9', '/e3', 7), ('v9', '/e3', NULL);
CREATE TEMP TABLE exact AS
SELECT q, (SELECT metric_anomaly.heatmap(v, e, ms, q, '{"title": "t"}') FROM samples) AS raw,
       (SELECT metric_anomaly.heatmap(v, e, p, '{"title": "t"}')
          FROM (SELECT v, e, percentile_cont(q) WITHIN GROUP (ORDER BY ms) AS p
                  FROM samples WHERE ms <> 'NaN' OR ms IS NULL GROUP BY v, e) c) AS sql,
       (SELECT array[min(p), max(p)]
          FROM (SELECT percentile_cont(q) WITHIN GROUP (ORDER BY ms) AS p
                  FROM samples WHERE ms <> 'NaN' GROUP BY v, e) c) AS ends
  FROM unnest('{0, 0.25, 0.5, 0.95, 0.999, 1}'::float8[]) q;
SELECT q, raw = sql AS same_png, (pg_temp.grid(raw))[5:6] AS rows_cols,
       (pg_temp.grid(raw))[7:8] = ends AS ends_exact, length(raw) > 0 AS drawn
  FROM exact ORDER BY q;
-- Selection on the orders that trouble it: all equal, sorted, reversed,
-- organ pipe, few distinct values (5,000 samples a cell, inserted in order).
CREATE TEMP TABLE ordered AS
SELECT 'r' AS v, shape AS e,
       CASE shape WHEN 'equal' THEN 3 WHEN 'sorted' THEN i WHEN 'reversed' THEN -i
                  WHEN 'pipe' THEN least(i, 5001 - i) ELSE i % 3 END::float8 AS ms
  FROM unnest('{equal,sorted,reversed,pipe,few}'::text[]) shape, generate_series(1, 5000) i
 ORDER BY shape, i;
SELECT q, metric_anomaly.heatmap(v, e, ms, q, NULL) =
          (SELECT metric_anomaly.heatmap(v, e, p, NULL)
             FROM (SELECT v, e, percentile_cont(q) WITHIN GROUP (ORDER BY ms) AS p FROM ordered GROUP BY v, e) c) AS same_png
  FROM ordered, unnest('{0.01, 0.5, 0.95}'::float8[]) q GROUP BY q ORDER BY q;
-- v9: /e1 (1, 2) at p50 is 1.5; /e2 (NULL, NaN only) is empty; the hot
-- cell (v2, /e1) the darkest.
SELECT pg_temp.cell_color(raw, 3, 2) AS only_null_nan, pg_temp.cell_color(raw, 2, 1) AS hot
  FROM exact WHERE q = 0.5;
SELECT (pg_temp.grid(metric_anomaly.heatmap(v, e, ms, 0.5, NULL)))[7:8] AS v9_e1_median
  FROM samples WHERE v = 'v9' AND e = '/e1';
SELECT metric_anomaly.heatmap(v, e, ms, 0.5, NULL) IS NULL AS no_rows FROM samples WHERE false;
\set VERBOSITY default
SELECT metric_anomaly.heatmap(v, e, ms, 1.5, NULL) FROM samples;
SELECT metric_anomaly.heatmap(v, e, ms, NULL::float8, NULL) FROM samples;
SELECT metric_anomaly.heatmap(v, e, ms, CASE WHEN ms > 100 THEN 0.9 ELSE 0.5 END, NULL) FROM samples;
SELECT metric_anomaly.heatmap(i::text, 'c', i, 0.5, NULL) FROM generate_series(1, 51) i;
SELECT metric_anomaly.heatmap('r', repeat('x', 65), 1, 0.5, NULL);
\set VERBOSITY terse

-- render_heatmap over a quantile definition: p95 per (app_v, endpoint)
-- merged from the stored sketches, equal to quantile() of the cell.
INSERT INTO metric_anomaly.metric_definitions (metric_name, event_types, aggregate, value_path, quantile, dimensions)
VALUES ('api_p95', '{api}', 'quantile', '{latency_ms}', 0.95, '{app_v,endpoint}'),
       ('api_count', '{api}', 'count', NULL, NULL, '{app_v,endpoint,os}');
INSERT INTO metric_anomaly.business_events (event_type, event_timestamp, payload)
SELECT 'api', '2026-01-02 00:00:00+00'::timestamptz + (i % 600) * interval '1 second',
       jsonb_build_object('app_v', 'v' || (i % 2), 'endpoint', '/e' || (i % 3), 'os', 'os' || (i % 5),
                          'latency_ms', (i % 97) * CASE WHEN i % 2 = 1 AND i % 3 = 2 THEN 10 ELSE 1 END)
  FROM generate_series(1, 3000) AS i;
SELECT metric_anomaly.process_pending('2026-01-02 00:20:00+00') > 0 AS folded;
CREATE TEMP TABLE r AS
SELECT metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint',
                                     '2026-01-02 00:00+00', '2026-01-02 00:10+00') AS png;
SELECT pg_temp.png_info(png), (pg_temp.grid(png))[5:6] AS rows_cols,
       (pg_temp.grid(png))[7] = (SELECT min(metric_anomaly.quantile('api_p95', jsonb_build_object('app_v', a, 'endpoint', e),
                                                           '2026-01-02 00:00+00', '2026-01-02 00:10+00', 0.95))
                                  FROM unnest('{v0,v1}'::text[]) a, unnest('{/e0,/e1,/e2}'::text[]) e) AS min_is_quantile,
       (pg_temp.grid(png))[8] = metric_anomaly.quantile('api_p95', '{"app_v": "v1", "endpoint": "/e2"}',
                                                         '2026-01-02 00:00+00', '2026-01-02 00:10+00', 0.95) AS max_is_v1_e2
  FROM r;
-- The hot cell (v1, /e2) is the darkest.
SELECT pg_temp.cell_color(png, 1, 2) AS v1_e2 FROM r;
-- A series anomalous in its newest evaluated minute outlines its cell.
UPDATE metric_anomaly.aggregated_metrics a SET is_anomaly = true, needs_eval = false
 WHERE a.metric_name = metric_anomaly.series_name('api_p95', '{"app_v": "v0", "endpoint": "/e1"}')
   AND a.metric_timestamp = (SELECT max(b.metric_timestamp) FROM metric_anomaly.aggregated_metrics b
                              WHERE b.metric_name = a.metric_name);
UPDATE metric_anomaly.aggregated_metrics SET needs_eval = false WHERE metric_name LIKE 'api_p95%';
SELECT pg_temp.cell_color(png, 0, 1, 0.005, 0.5) AS v0_e1_edge, pg_temp.cell_color(png, 0, 0, 0.005, 0.5) AS v0_e0_edge
  FROM (SELECT metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint',
                                             '2026-01-02 00:00+00', '2026-01-02 00:10+00') AS png) s;
-- A count over a definition with a third dimension: cells add up.
SELECT (pg_temp.grid(png))[7:8] AS min_max
  FROM (SELECT metric_anomaly.render_heatmap('api_count', 'endpoint', 'os',
                                             '2026-01-02 00:00+00', '2026-01-02 00:10+00') AS png) s;
-- Nothing in the range: NULL.
SELECT metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint', '2025-01-01', '2025-01-02') IS NULL AS empty;
\set VERBOSITY default
SELECT metric_anomaly.render_heatmap('nope', 'app_v', 'endpoint');
SELECT metric_anomaly.render_heatmap('api_p95', 'app_v', 'os');
SELECT metric_anomaly.render_heatmap('api_p95', 'app_v', 'app_v');
SELECT metric_anomaly.render_heatmap('api_p95', 'app_v', 'endpoint', '2026-01-02', '2026-01-01');

DROP EXTENSION metric_anomaly;
