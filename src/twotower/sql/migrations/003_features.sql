-- Feature functions (seed 003 "RPC mode"): the raw aggregates of one user / one video as JSON.
-- twotower.features turns this JSON into exactly the vectors the bulk pipeline builds, so
-- training and serving share one feature definition. Hours are in UTC.
-- They read the app's tables through the source views (twotower.source) as their owner
-- (SECURITY DEFINER, search_path pinned); a caller acting as `authenticated` gets only its own
-- user's features (NULL for anyone else), and `anon` may not call them at all (security.sql).
CREATE OR REPLACE FUNCTION get_user_embedding_features(
    p_user_id text, p_as_of timestamptz DEFAULT now(), p_max_history integer DEFAULT 200)
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twotower, pg_catalog AS $$
WITH allowed AS (
    SELECT current_setting('role') NOT IN ('authenticated', 'anon')
           OR p_user_id = (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub') AS ok
), d AS (
    SELECT d.video_id, d.decision_type, d.created_at, v.price
    FROM src_decisions d LEFT JOIN src_videos v ON v.id = d.video_id
    WHERE d.user_id = p_user_id AND d.created_at < p_as_of AND (SELECT ok FROM allowed)
), likes AS (
    SELECT * FROM d WHERE decision_type = 'like'
), p AS (
    SELECT created_at FROM src_profiles WHERE user_id = p_user_id AND (SELECT ok FROM allowed)
)
SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM p) AND NOT EXISTS (SELECT 1 FROM d) THEN NULL ELSE
jsonb_build_object(
    'user_id', p_user_id,
    'as_of', p_as_of,
    'created_at', (SELECT created_at FROM p),
    'like_count', (SELECT count(*) FROM likes),
    'nope_count', (SELECT count(*) FROM d WHERE decision_type = 'nope'),
    'mean_price', (SELECT avg(price) FROM likes),
    'median_price', (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY price) FROM likes WHERE price IS NOT NULL),
    'last_like_at', (SELECT max(created_at) FROM likes),
    'avg_like_hour', (SELECT avg(extract(hour FROM created_at AT TIME ZONE 'UTC'))::float8 FROM likes),
    'liked_tags', (SELECT coalesce(jsonb_object_agg(tag_name, n), '{}'::jsonb) FROM (
        SELECT t.tag_name, count(*) AS n FROM likes l JOIN src_video_tags t ON t.video_id = l.video_id
        GROUP BY t.tag_name) x),
    'liked_performers', (SELECT coalesce(jsonb_object_agg(performer_name, n), '{}'::jsonb) FROM (
        SELECT t.performer_name, count(*) AS n FROM likes l JOIN src_video_performers t ON t.video_id = l.video_id
        GROUP BY t.performer_name) x),
    'liked_video_ids', (SELECT coalesce(jsonb_agg(video_id ORDER BY created_at DESC, video_id), '[]'::jsonb) FROM (
        SELECT video_id, created_at FROM likes ORDER BY created_at DESC, video_id LIMIT p_max_history) h),
    'decided_count', (SELECT count(*) FROM d)
) END
$$;

CREATE OR REPLACE FUNCTION get_item_embedding_features(p_video_id text)
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twotower, pg_catalog AS $$
SELECT jsonb_build_object(
    'video_id', v.id, 'price', v.price, 'duration_seconds', v.duration_seconds,
    'product_released_at', v.product_released_at, 'genre', v.genre, 'maker', v.maker,
    'updated_at', v.updated_at,
    'tags', coalesce((SELECT jsonb_agg(tag_name ORDER BY tag_name) FROM src_video_tags WHERE video_id = v.id), '[]'::jsonb),
    'performers', coalesce((SELECT jsonb_agg(performer_name ORDER BY performer_name) FROM src_video_performers WHERE video_id = v.id), '[]'::jsonb))
FROM src_videos v WHERE v.id = p_video_id
$$;
