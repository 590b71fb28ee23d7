-- Record a like/nope: idempotent on (user, video); the latest answer wins. The profile is
-- created on first sight (apps that keep profiles elsewhere still work).
WITH p AS (INSERT INTO profiles (user_id) VALUES (%(user_id)s) ON CONFLICT (user_id) DO NOTHING)
INSERT INTO user_video_decisions (user_id, video_id, decision_type, created_at)
VALUES (%(user_id)s, %(video_id)s, %(decision_type)s, clock_timestamp())
ON CONFLICT (user_id, video_id) DO UPDATE SET decision_type = excluded.decision_type, created_at = excluded.created_at
RETURNING created_at;
