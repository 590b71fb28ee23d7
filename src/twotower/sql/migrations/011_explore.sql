-- Exploration for new videos: the pool of videos that have not yet had their first 20 answers
-- (the newest 500 such), with their like and nope counts, recomputed at most once a minute
-- (twotower.refresh_explore) because counting answers per video is a pass over the decisions.
-- A share of each deck (serving.explore_share) is drawn from it by Thompson sampling
-- (twotower.explore_pick).
CREATE TABLE IF NOT EXISTS explore_cache (
    video_id     text PRIMARY KEY,
    likes        integer NOT NULL DEFAULT 0,
    nopes        integer NOT NULL DEFAULT 0,
    released_at  timestamptz
);
