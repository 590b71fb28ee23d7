-- Recommendations computed inside the database (recommend_videos, called as
-- `supabase.rpc('recommend_videos', ...)`), with the same semantics as POST /v1/recommendations:
-- the A/B arm by the same stable hash, decided videos skipped (iterative scans, or over-fetching
-- on pgvector < 0.8), `limit` rows through the same fills, the cold-start list, the served list
-- logged. For versions whose user tower is linear in the like history (model_meta.json
-- "user_vector": "sql") the user vector is the sum of one row per liked video, so every swipe the
-- app writes is in the very next answer; other versions use the stored user vector.
ALTER TABLE embedding_model_versions
    ADD COLUMN IF NOT EXISTS user_vector text NOT NULL DEFAULT 'onnx' CHECK (user_vector IN ('sql', 'onnx')),
    ADD COLUMN IF NOT EXISTS max_history integer NOT NULL DEFAULT 200;

-- The history rows of SQL-servable versions: the user tower's row for each video it knows.
CREATE TABLE IF NOT EXISTS history_embeddings (
    model_version  text NOT NULL,
    video_id       text NOT NULL,
    embedding      vector NOT NULL,
    PRIMARY KEY (model_version, video_id)
);

-- Settings the SQL path shares with the service (the A/B salt), written by `db init`.
CREATE TABLE IF NOT EXISTS settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
