-- Charts: render_metric_chart and the line_chart aggregate.  PNG structure
-- is read with get_byte; pixels are decoded by test/png_probe.c (libgd, not
-- our encoder) at coordinates computed from the plot mapping the PNG
-- carries in its "metric_anomaly.plot" tEXt chunk.
CREATE EXTENSION metric_anomaly;
SET timezone = 'UTC';
SET datestyle = 'ISO';

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

-- The plot mapping: x0 y0 x1 y1 t0 t1 v0 v1 [w0 w1].
CREATE FUNCTION pg_temp.plot(b bytea) RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_to_array(pg_temp.png_text(b, 'metric_anomaly.plot'), ' ')::float8[]
$$;

-- Pixel of time t and value v on the left axis (right axis when right).
CREATE FUNCTION pg_temp.px(b bytea, t timestamptz, v float8, right_axis boolean DEFAULT false)
RETURNS int[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[floor(m[1] + (extract(epoch FROM t) - m[5]) / (m[6] - m[5]) * (m[3] - m[1]))::int,
                 floor(m[4] - (v - m[lo]) / (m[lo + 1] - m[lo]) * (m[4] - m[2]))::int]
      FROM (SELECT pg_temp.plot(b) AS m, CASE WHEN right_axis THEN 9 ELSE 7 END AS lo) s
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

-- Colour of the pixel of (t, v).
CREATE FUNCTION pg_temp.color_at(b bytea, t timestamptz, v float8, right_axis boolean DEFAULT false)
RETURNS text LANGUAGE sql AS $$
    SELECT color FROM pg_temp.probe(b, ARRAY[(pg_temp.px(b, t, v, right_axis))[1]],
                                       ARRAY[(pg_temp.px(b, t, v, right_axis))[2]])
$$;

-- Pixels of the plot column at time t whose colour is the series blue
-- (blue clearly above red and green: line and its antialiasing, not the
-- pale band).
CREATE FUNCTION pg_temp.line_pixels(b bytea, t timestamptz) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE ('x' || substr(color, 5, 2))::bit(8)::int
                                 - ('x' || substr(color, 1, 2))::bit(8)::int > 60
                              AND ('x' || substr(color, 5, 2))::bit(8)::int < 240)
      FROM (SELECT pg_temp.plot(b) AS m, (pg_temp.px(b, t, 0))[1] AS cx) s,
           LATERAL pg_temp.probe(b, array_fill(cx, ARRAY[(m[4] - m[2])::int]),
                                 ARRAY(SELECT generate_series(m[2]::int, m[4]::int - 1))) p
$$;

-- A metric of two hours: values 100..106, evidence (band 90..110) from
-- minute 30 on, an anomaly of 200 at minute 60, minutes 90..94 missing.
INSERT INTO metric_anomaly.series (metric_name, filled_until)
VALUES ('signups', '2026-11-20 02:00+00'), ('quiet', '2026-11-20 02:00+00');
INSERT INTO metric_anomaly.aggregated_metrics
    (metric_name, metric_timestamp, metric_value, sample_count, is_anomaly, anomaly_context, needs_eval)
SELECT 'signups', '2026-11-20 00:00+00'::timestamptz + i * interval '1 minute',
       CASE WHEN i = 60 THEN 200 ELSE 100 + i % 7 END, 1, i = 60,
       CASE WHEN i >= 30 THEN jsonb_build_object('method', '3-sigma', 'mean', 100,
            'std_dev', 10.0 / 3, 'upper_boundary', 110, 'lower_boundary', 90,
            'z_score', 0, 'sigma', 3, 'window', 30) END,
       false
  FROM generate_series(0, 119) AS i
 WHERE i NOT BETWEEN 90 AND 94;

CREATE TEMP TABLE c AS
SELECT metric_anomaly.render_metric_chart('signups', '2026-11-20 00:00+00', '2026-11-20 02:00+00') AS png;

-- Structure: signature, IHDR size, plot inside the image, range mapped.
SELECT pg_temp.png_info(png) FROM c;
SELECT m[1] > 0 AND m[3] < 1200 AND m[1] < m[3] AS x_inside,
       m[2] > 0 AND m[4] < 600 AND m[2] < m[4] AS y_inside,
       to_timestamp(m[5]) AS t0, to_timestamp(m[6]) AS t1,
       m[7] < 90 AND m[8] > 200 AS values_fit
  FROM (SELECT pg_temp.plot(png) AS m FROM c) s;
-- Time ticks: round local times for a 2-hour span.
SELECT pg_temp.png_text(png, 'metric_anomaly.xticks') FROM c;

-- The anomaly marker is red at the anomaly's place; the band is shaded
-- between 90 and 110 once the evidence exists, not before, not above.
SELECT pg_temp.color_at(png, '2026-11-20 01:00+00', 200) AS anomaly_centre,
       pg_temp.color_at(png, '2026-11-20 00:47:30+00', 92.5) AS in_band,
       pg_temp.color_at(png, '2026-11-20 00:47:30+00', 112.5) AS above_band,
       pg_temp.color_at(png, '2026-11-20 00:12:30+00', 92.5) AS before_evidence,
       pg_temp.color_at(png, '2026-11-20 01:32:30+00', 92.5) AS band_in_gap
  FROM c;
-- The line: drawn around minute 80, absent in the gap (minutes 90..94).
SELECT pg_temp.line_pixels(png, '2026-11-20 01:20:30+00') > 0 AS line_at_80,
       pg_temp.line_pixels(png, '2026-11-20 01:32:30+00') AS line_in_gap
  FROM c;

-- Sizes.
SELECT w, h, pg_temp.png_info(metric_anomaly.render_metric_chart('signups',
           '2026-11-20 00:00+00', '2026-11-20 02:00+00', w, h))
  FROM (VALUES (100, 100), (640, 480), (1200, 600), (4000, 300), (300, 4000)) AS s(w, h);
-- Every size decodes with libpng and has white corners.
SELECT w, h, array_agg(p.color ORDER BY p.x, p.y) AS corners
  FROM (VALUES (100, 100), (640, 480), (4000, 300)) AS s(w, h),
       LATERAL pg_temp.probe(metric_anomaly.render_metric_chart('signups',
           '2026-11-20 00:00+00', '2026-11-20 02:00+00', w, h),
           ARRAY[0, w - 1], ARRAY[0, h - 1]) p
 GROUP BY w, h ORDER BY w;

-- An empty range is a chart that says so (the mapping keeps the range).
SELECT pg_temp.png_info(png), to_timestamp((pg_temp.plot(png))[5]) AS t0
  FROM (SELECT metric_anomaly.render_metric_chart('quiet', '2026-11-20 00:00+00',
                                                  '2026-11-20 01:00+00', 400, 300) AS png) s;
-- since = until is allowed.
SELECT pg_temp.png_info(metric_anomaly.render_metric_chart('signups',
           '2026-11-20 01:00+00', '2026-11-20 01:00+00', 300, 200));

-- Local time: the same instants, ticks at round Shanghai hours.
SET timezone = 'Asia/Shanghai';
SELECT pg_temp.png_text(metric_anomaly.render_metric_chart('signups',
           '2026-11-20 00:00+00', '2026-11-20 02:00+00'), 'metric_anomaly.xticks');
SET timezone = 'Asia/Kolkata';
SELECT pg_temp.png_text(metric_anomaly.render_metric_chart('signups',
           '2026-11-20 00:00+00', '2026-11-20 02:00+00'), 'metric_anomaly.xticks');
SET timezone = 'UTC';

-- Errors.
\set VERBOSITY default
SELECT metric_anomaly.render_metric_chart('nope', '2026-11-20 00:00+00', '2026-11-20 02:00+00');
SELECT metric_anomaly.render_metric_chart('signups', '2026-11-20 02:00+00', '2026-11-20 00:00+00');
SELECT metric_anomaly.render_metric_chart('signups', '-infinity', '2026-11-20 00:00+00');
SELECT metric_anomaly.render_metric_chart('signups', '2026-11-20 00:00+00', '2026-11-20 02:00+00', 99, 600);
SELECT metric_anomaly.render_metric_chart('signups', '2026-11-20 00:00+00', '2026-11-20 02:00+00', 4001, 600);
SELECT metric_anomaly.render_metric_chart('signups', '2026-11-20 00:00+00', '2026-11-20 02:00+00', 1200, 0);
SELECT metric_anomaly.render_metric_chart(NULL, '2026-11-20 00:00+00', '2026-11-20 02:00+00') IS NULL AS strict;
-- At most 100000 points.
INSERT INTO metric_anomaly.series (metric_name, filled_until) VALUES ('dense', '2026-11-20 00:00+00');
INSERT INTO metric_anomaly.aggregated_metrics
    (metric_name, metric_timestamp, metric_value, sample_count, needs_eval)
SELECT 'dense', '2026-01-01 00:00+00'::timestamptz + i * interval '1 minute', i, 1, false
  FROM generate_series(1, 100001) AS i;
SELECT metric_anomaly.render_metric_chart('dense', '2026-01-01 00:00+00', '2026-12-31 00:00+00');
SELECT pg_temp.png_info(metric_anomaly.render_metric_chart('dense', '2026-01-01 00:00+00',
           '2026-01-01 00:00+00'::timestamptz + interval '100000 minutes', 400, 300));
DELETE FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'dense';
DELETE FROM metric_anomaly.series WHERE metric_name = 'dense';

-- line_chart: any query.  No rows give NULL.
SELECT metric_anomaly.line_chart(t, v) IS NULL AS no_rows
  FROM (SELECT now(), 1.0::float8 WHERE false) s(t, v);
SELECT pg_temp.png_info(metric_anomaly.line_chart(metric_timestamp, metric_value))
  FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'signups';
SELECT pg_temp.png_info(metric_anomaly.line_chart(metric_timestamp, metric_value,
           '{"title": "Signups", "width": 800, "height": 400, "label": "per minute"}'))
  FROM metric_anomaly.aggregated_metrics WHERE metric_name = 'signups';
-- NaN and infinities are skipped: the value range is that of 1..3.
SELECT pg_temp.png_info(png), (pg_temp.plot(png))[7:8] AS value_range
  FROM (SELECT metric_anomaly.line_chart(t, v, '{"width": 400, "height": 300}') AS png
          FROM (VALUES ('2026-11-20 00:00+00'::timestamptz, 1::float8),
                       ('2026-11-20 00:01+00', 'NaN'), ('2026-11-20 00:02+00', 'Infinity'),
                       ('2026-11-20 00:03+00', '-Infinity'), ('2026-11-20 00:04+00', 3),
                       ('2026-11-20 00:05+00', 2)) AS d(t, v)) s;
-- Only NaN: a chart saying there is no data.
SELECT pg_temp.png_info(metric_anomaly.line_chart(t, 'NaN'::float8))
  FROM generate_series('2026-11-20 00:00+00'::timestamptz, '2026-11-20 00:10+00', '1 minute') t;
-- A single point: one minute either side, value +-10%, drawn as a dot.
SELECT (pg_temp.plot(png))[5:8] AS mapping,
       pg_temp.color_at(png, '2026-11-20 00:00+00', 50) AS dot
  FROM (SELECT metric_anomaly.line_chart('2026-11-20 00:00+00'::timestamptz, 50::float8) AS png) s;
-- A constant series: value +-10%.
SELECT (pg_temp.plot(metric_anomaly.line_chart(t, 7::float8)))[7:8] AS value_range
  FROM generate_series('2026-11-20 00:00+00'::timestamptz, '2026-11-20 01:00+00', '1 minute') t;
-- A constant zero series: +-1.
SELECT (pg_temp.plot(metric_anomaly.line_chart(t, 0::float8)))[7:8] AS value_range
  FROM generate_series('2026-11-20 00:00+00'::timestamptz, '2026-11-20 01:00+00', '1 minute') t;
-- A NULL value breaks the line: nothing blue between the two halves.
SELECT pg_temp.line_pixels(png, '2026-11-20 00:30+00') AS in_break,
       pg_temp.line_pixels(png, '2026-11-20 00:10:30+00') > 0 AS before_break
  FROM (SELECT metric_anomaly.line_chart(t, CASE WHEN t BETWEEN '2026-11-20 00:25+00'
                                                 AND '2026-11-20 00:35+00' THEN NULL ELSE 5 END,
                                         '{"width": 600, "height": 300}') AS png
          FROM generate_series('2026-11-20 00:00+00'::timestamptz, '2026-11-20 01:00+00', '1 minute') t) s;

-- Two series, the second on a right axis, dashed; the first with markers
-- (orders per minute and amount per minute).
CREATE TEMP TABLE orders AS
SELECT '2026-11-20 00:00+00'::timestamptz + i * interval '1 minute' AS minute,
       10 + i % 5 AS orders, 1000.0 + 100 * (i % 3) AS amount
  FROM generate_series(0, 59) AS i;
CREATE TEMP TABLE c2 AS
SELECT metric_anomaly.line_chart(minute, v, s,
           '{"title": "Orders and amount per minute", "right_axis": ["amount"],
             "dashed": ["amount"], "markers": ["orders"], "y_label": "orders",
             "y2_label": "amount", "width": 900, "height": 450}') AS png
  FROM orders, LATERAL (VALUES ('orders', orders::float8), ('amount', amount)) AS x(s, v);
SELECT pg_temp.png_info(png), array_length(pg_temp.plot(png), 1) AS mapping_fields,
       (pg_temp.plot(png))[7] < 10 AND (pg_temp.plot(png))[8] > 14 AS left_fits_orders,
       (pg_temp.plot(png))[9] < 1000 AND (pg_temp.plot(png))[10] > 1200 AS right_fits_amount
  FROM c2;
-- An orders marker (blue with a white ring) sits on its point; the amount
-- line (orange) passes through its points on the right axis.
SELECT pg_temp.color_at(png, '2026-11-20 00:07+00', 12) AS orders_marker,
       ('x' || substr(a, 1, 2))::bit(8)::int - ('x' || substr(a, 5, 2))::bit(8)::int > 60
           AS amount_point_is_orange
  FROM (SELECT png, pg_temp.color_at(png, '2026-11-20 00:02+00', 1200, true) AS a FROM c2) s;

-- line_chart errors.
SELECT metric_anomaly.line_chart(now(), 1, '{"colour": "red"}');
SELECT metric_anomaly.line_chart(now(), 1, '{"width": 50}');
SELECT metric_anomaly.line_chart(now(), 1, '{"width": 500.5}');
SELECT metric_anomaly.line_chart(now(), 1, '{"title": 5}');
SELECT metric_anomaly.line_chart(now(), 1, '[1, 2]');
SELECT metric_anomaly.line_chart(now(), 1, 'a', '{"right_axis": ["b"]}');
SELECT metric_anomaly.line_chart(now(), 1, 'a', '{"dashed": "a"}');
SELECT metric_anomaly.line_chart(now(), 1, 'series ' || i, '{}')
  FROM generate_series(1, 17) i;
SELECT metric_anomaly.line_chart(now() + i * interval '1 second', i)
  FROM generate_series(1, 100001) i;

-- No memory growth over 1,000 renders in one session.
CREATE FUNCTION pg_temp.rss_kb() RETURNS bigint LANGUAGE sql AS $$
    SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmRSS:\s+(\d+) kB'))[1]::bigint
$$;
SELECT count(length(metric_anomaly.render_metric_chart('signups', '2026-11-20 00:00+00',
                    '2026-11-20 02:00+00', 400 + g % 2, 300)))
  FROM generate_series(1, 100) g;
SELECT pg_temp.rss_kb() AS rss_before \gset
SELECT count(length(metric_anomaly.render_metric_chart('signups', '2026-11-20 00:00+00',
                    '2026-11-20 02:00+00', 400 + g % 2, 300)))
  FROM generate_series(1, 1000) g;
SELECT count(*) FROM (SELECT metric_anomaly.line_chart(minute, orders, '{"width": 300, "height": 200}')
                        FROM orders, generate_series(1, 1000) g GROUP BY g) s;
SELECT pg_temp.rss_kb() - :rss_before < 2048 AS rss_growth_below_2mb;

-- Text in any script: glyphs DejaVu lacks come from the next font that has
-- them (fontconfig's list, e.g. WenQuanYi Micro Hei).  A CJK title's pixels
-- differ from the same title drawn with the missing-glyph box (U+10FFFD is
-- in no font), and it has ink; the same for a mixed title.
CREATE FUNCTION pg_temp.title_pixels(title text) RETURNS text
LANGUAGE sql AS $$
    SELECT string_agg(p.color, '' ORDER BY p.x, p.y)
      FROM (SELECT metric_anomaly.line_chart('2026-11-20 00:00+00'::timestamptz, 1::float8,
                                             json_build_object('title', title, 'width', 600,
                                                               'height', 300)::jsonb) AS png) c,
           LATERAL pg_temp.probe(c.png,
                                 ARRAY(SELECT x FROM generate_series(0, 299) x, generate_series(0, 39) y ORDER BY x, y),
                                 ARRAY(SELECT y FROM generate_series(0, 299) x, generate_series(0, 39) y ORDER BY x, y)) p
$$;
CREATE TEMP TABLE titles AS
SELECT t, pg_temp.title_pixels(t) AS pixels
  FROM (VALUES ('注册转化率'), (repeat(U&'\+10FFFD', 5)),
               ('注册 signups ✓'), (U&'\+10FFFD\+10FFFD signups \+10FFFD')) AS v(t);
SELECT a.t, a.pixels <> b.pixels AS not_boxes,
       length(replace(a.pixels, 'ffffff', '')) > 0 AS has_ink
  FROM titles a JOIN titles b
    ON (a.t, b.t) IN (('注册转化率', repeat(U&'\+10FFFD', 5)),
                      ('注册 signups ✓', U&'\+10FFFD\+10FFFD signups \+10FFFD'));

-- Value ticks: one format per axis, chosen for its range (the axis adds
-- 5% either side of the data).  The labels of each range are distinct.
CREATE FUNCTION pg_temp.ylabels(lo float8, hi float8) RETURNS text
LANGUAGE sql AS $$
    SELECT regexp_replace(pg_temp.png_text(metric_anomaly.line_chart(t, v, '{"width": 600, "height": 400}'),
                                           'metric_anomaly.yticks'), '(^|\|)[^ |]+ ', '\1', 'g')
      FROM (VALUES ('2026-11-20 00:00+00'::timestamptz, lo), ('2026-11-20 00:01+00', hi)) AS d(t, v)
$$;
SELECT lo, hi, l AS labels,
       (SELECT count(DISTINCT x) = count(*) FROM unnest(string_to_array(l, '|')) x) AS distinct_labels
  FROM (VALUES (0::float8, 1.2e6::float8), (0, 1), (-5, 5), (0, 45000), (100000, 100010),
               (1234560, 1234570), (12, 12.0001), (-2.5e7, -1e7), (0, 3e-7), (0.001, 0.0012),
               (1e300, 5e300), (-1e300, 1e300), (1e-300, 5e-300), (-3e-300, -1e-300),
               (1e9, 1e9 + 1), (-1e9 - 1, -1e9 + 1), (1e12 + 5, 1e12 + 7), (1e9 - 1e-9, 1e9 + 1e-9),
               (-1.7e308, 1.7e308)) AS r(lo, hi),
       LATERAL pg_temp.ylabels(lo, hi) l;

-- Time ticks from milliseconds to decades.
SELECT span, regexp_replace(pg_temp.png_text(metric_anomaly.line_chart(t, v, '{"width": 900, "height": 300}'),
                                             'metric_anomaly.xticks'), '(^|\|)[^ |]+ ', '\1', 'g') AS labels
  FROM (VALUES (interval '3 milliseconds'), ('250 milliseconds'), ('2.5 seconds'), ('90 seconds'),
               ('3 years'), ('40 years')) AS s(span),
       LATERAL (SELECT '2026-11-20 00:00+00'::timestamptz + span * i / 10 AS t, i::float8 AS v
                  FROM generate_series(0, 10) i) d
 GROUP BY span ORDER BY span;

-- Every PNG passes pngcheck (CRCs, the zlib stream inflated with its
-- Adler-32): 300 random charts of random sizes, 1 to 3 series, values
-- from 1e-300 to 1e300, gaps and NULLs.
-- (pngcheck's stderr is dropped: one built against another zlib than the
-- one loaded, as on sid, warns there; its exit status is the verdict.)
\set random_file `pwd`/test/tmp/random_charts.txt
SELECT setseed(0.16);
COPY (SELECT g, encode(metric_anomaly.line_chart(t, v, s,
                  json_build_object('width', 100 + (g * 7919) % 1400, 'height', 100 + (g * 104729) % 700,
                                    'title', 'chart ' || g,
                                    'right_axis', CASE WHEN g % 3 = 2 THEN ARRAY['s2'] ELSE '{}' END)::jsonb), 'hex')
        FROM (SELECT g, '2026-11-20 00:00+00'::timestamptz + i * (interval '1 second' * (1 + g % 97)) AS t,
                     CASE WHEN random() < 0.02 THEN NULL
                          ELSE (random() - 0.3) * 10 ^ (((g * 37) % 600) - 300) END AS v,
                     's' || (i % (1 + g % 3)) AS s
                FROM generate_series(1, 300) g, generate_series(0, (g * 31) % 900) i) d
       GROUP BY g) TO :'random_file';
\! perl -ne 'chomp; my ($g, $h) = split /\t/; open my $f, ">", "test/tmp/random_$g.png" or die; binmode $f; print $f pack("H*", $h); close $f' test/tmp/random_charts.txt && n=0 && for f in test/tmp/random_*.png; do pngcheck -q "$f" > /dev/null 2>&1 && n=$((n + 1)); done; echo "$n of 300 random charts pass pngcheck"; rm -f test/tmp/random_*.png

-- The encoder on canvases charts do not make (test/chart_png_check.c):
-- 3 colours and ~1,000 antialiasing blends take a palette (the blends off
-- by at most 17 levels of a channel), random pixels fall back to lossless
-- RGB; all decode with libpng and pass pngcheck.
\! cc -O1 -Isrc $(pkg-config --cflags gdlib fontconfig 2>/dev/null) -o test/tmp/chart_png_check test/chart_png_check.c src/chart.c src/chart_text.c src/chart_png.c src/chart_png_palette.c src/chart_png_rgb.c $(pkg-config --libs gdlib fontconfig 2>/dev/null || echo -lgd -lfontconfig) -lm && test/tmp/chart_png_check test/tmp && pngcheck -q test/tmp/check_*.png > /dev/null 2>&1 && echo "every PNG passes pngcheck"; rm -f test/tmp/check_*.png

-- The SSE2 paths of the drawing code (stroke rows, compositing, the PNG
-- encoder's scans) and the plain C ones draw the same image: the drawing
-- files, built both ways into test/chart_demo.c, render a noisy day of
-- minutes with anomalies.
\! awk 'BEGIN { for (i = 0; i < 1440; i++) { v = 100 + 20 * sin(i / 30) + (i * 7919 % 97 - 48) / 3; a = (i % 240 == 200); if (a) v = 30; printf "2026-11-20 %02d:%02d:00,%.4f,%d\n", int(i / 60), i % 60, v, a } }' > test/tmp/demo.csv
\! for v in sse2 plain; do f=; [ $v = plain ] && f=-U__SSE2__; cc -O2 $f -Isrc $(pkg-config --cflags gdlib fontconfig 2>/dev/null) -o test/tmp/chart_demo_$v test/chart_demo.c src/chart.c src/chart_text.c src/chart_png.c src/chart_png_palette.c src/chart_png_rgb.c src/chart_scale.c src/chart_line.c $(pkg-config --libs gdlib fontconfig 2>/dev/null || echo -lgd -lfontconfig) -lm && test/tmp/chart_demo_$v test/tmp/demo.csv test/tmp/demo_$v.png > /dev/null; done; cmp -s test/tmp/demo_sse2.png test/tmp/demo_plain.png && echo "plain C and SSE2 draw the same image" || echo "the images differ"

DROP EXTENSION metric_anomaly;
