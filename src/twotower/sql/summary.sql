SELECT
    (SELECT count(*) FROM profiles) AS users,
    (SELECT count(*) FROM videos) AS videos,
    (SELECT count(*) FROM user_video_decisions) AS decisions,
    (SELECT avg((decision_type = 'like')::int)::float FROM user_video_decisions) AS like_ratio,
    (SELECT count(*) FROM profiles p WHERE NOT EXISTS
        (SELECT 1 FROM user_video_decisions d WHERE d.user_id = p.user_id)) AS cold_users,
    (SELECT count(*) FROM videos v WHERE NOT EXISTS
        (SELECT 1 FROM user_video_decisions d WHERE d.video_id = v.id)) AS cold_videos,
    (SELECT min(created_at) FROM user_video_decisions) AS first_decision,
    (SELECT max(created_at) FROM user_video_decisions) AS last_decision;
