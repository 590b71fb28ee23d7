-- Change tracking without touching the app's tables: each video embedding remembers a fingerprint
-- (md5) of the video's inputs as they were when it was embedded; `batch-update` re-embeds the
-- videos whose fingerprint differs, so edits are found whether or not the app has `updated_at`,
-- and twotower installs no trigger on an app's table. Hashing every video is one pass over the
-- catalogue (a daily job); the fingerprint covers every column twotower reads from videos plus
-- the video's tags and performers.
ALTER TABLE video_embeddings ADD COLUMN IF NOT EXISTS fingerprint text;

CREATE OR REPLACE FUNCTION video_fingerprints(p_ids text[] DEFAULT NULL)
RETURNS TABLE (video_id text, fingerprint text)
LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH v AS (
    SELECT * FROM src_videos WHERE p_ids IS NULL OR id = ANY (p_ids)
), t AS (
    SELECT s.video_id, string_agg(s.tag_name, E'\x1f' ORDER BY s.tag_name) AS tags
    FROM src_video_tags s WHERE p_ids IS NULL OR s.video_id = ANY (p_ids) GROUP BY 1
), p AS (
    SELECT s.video_id, string_agg(s.performer_name, E'\x1f' ORDER BY s.performer_name) AS performers
    FROM src_video_performers s WHERE p_ids IS NULL OR s.video_id = ANY (p_ids) GROUP BY 1
)
SELECT v.id, md5(row(v.title, v.description, v.genre, v.maker, v.price, v.duration_seconds,
                     v.product_released_at, v.created_at, t.tags, p.performers)::text)
FROM v LEFT JOIN t ON t.video_id = v.id LEFT JOIN p ON p.video_id = v.id
$$;
