-- The per-user decision index also carries decision_type and video_id, so "this user's recent
-- likes" (reasons, served with every recommendation; the feature function's history) is an
-- index-only scan in time order: no heap visits, no sort.
DROP INDEX IF EXISTS decisions_user_time_idx;
CREATE INDEX decisions_user_time_idx ON user_video_decisions (user_id, created_at) INCLUDE (decision_type, video_id);
