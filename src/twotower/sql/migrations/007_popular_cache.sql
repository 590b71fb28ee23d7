-- The popular-and-recent list the SQL path serves from (cold start, last fill), recomputed by the
-- first call after it is 5 minutes old (as the service's in-memory list is refreshed): computing
-- it takes one pass over 30 days of decisions, far too slow for every call.
CREATE TABLE IF NOT EXISTS popular_cache (
    video_id  text PRIMARY KEY,
    score     double precision NOT NULL
);
