-- The demographic cold start (seed risk table: 人気度ベース推奨 + デモグラフィック情報活用): the
-- popular-and-recent list of each segment (a profile's age_range and region) that had at least
-- serving.segment_min_decisions decisions in the last 30 days of activity, recomputed with
-- popular_cache (twotower.refresh_popular). A cold user of such a segment gets its list first.
CREATE TABLE IF NOT EXISTS segment_popular (
    segment   text NOT NULL,
    video_id  text NOT NULL,
    score     double precision NOT NULL,
    PRIMARY KEY (segment, video_id)
);
