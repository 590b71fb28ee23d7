-- The dashboard's small aggregates, one row each (label, a, b): lists by source over the last
-- 24 hours, catalogue coverage of the last 7 days (distinct videos served, catalogue size).
SELECT 'source' AS kind, source AS label, count(*)::float8 AS a, NULL::float8 AS b
FROM recommendation_log WHERE served_at >= now() - interval '24 hours' GROUP BY source
UNION ALL
SELECT 'coverage', '7d',
       (SELECT count(DISTINCT v)::float8 FROM recommendation_log, unnest(video_ids) v
        WHERE served_at >= now() - interval '7 days'),
       (SELECT count(*)::float8 FROM src_videos)
