SELECT
    (SELECT count(*) FROM src_profiles) AS users,
    (SELECT count(*) FROM src_videos) AS videos,
    (SELECT count(*) FROM src_decisions) AS decisions,
    (SELECT avg((decision_type = 'like')::int)::float FROM src_decisions) AS like_ratio,
    (SELECT count(*) FROM src_profiles p WHERE NOT EXISTS
        (SELECT 1 FROM src_decisions d WHERE d.user_id = p.user_id)) AS cold_users,
    (SELECT count(*) FROM src_videos v WHERE NOT EXISTS
        (SELECT 1 FROM src_decisions d WHERE d.video_id = v.id)) AS cold_videos,
    (SELECT min(created_at) FROM src_decisions) AS first_decision,
    (SELECT max(created_at) FROM src_decisions) AS last_decision;
