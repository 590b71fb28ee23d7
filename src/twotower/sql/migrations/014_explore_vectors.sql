-- The explore pool's item vectors for each active version, copied with the pool by
-- twotower.refresh_explore (at most once a minute): scoring the pool for a user then reads one
-- small table instead of probing video_embeddings' index 500 times (3.3 ms of every call on a
-- 50k-video catalogue, docs/benchmarks.md section 8). A version activated (or embedded afresh)
-- since the last copy is read from video_embeddings until the next one; a video re-embedded in
-- place by a batch job keeps its old vector here for up to that minute.
CREATE TABLE IF NOT EXISTS explore_vectors (
    model_version  text NOT NULL,
    video_id       text NOT NULL,
    embedding      vector NOT NULL,
    PRIMARY KEY (model_version, video_id)
);
