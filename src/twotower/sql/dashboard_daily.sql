-- The dashboard's A/B arms over time: ab_users.sql's per-user rows, per UTC day of serving.
WITH shown AS (
    SELECT l.id, l.user_id, coalesce(l.model_version, '(' || l.source || ')') AS version,
           date_trunc('day', l.served_at AT TIME ZONE 'UTC')::date AS day, l.served_at, unnest(l.video_ids) AS video_id
    FROM recommendation_log l
    WHERE l.served_at >= %(since)s AND l.source <> 'fallback'
)
SELECT s.day, s.version, s.user_id,
       count(DISTINCT s.id) AS lists,
       count(*) AS shown,
       count(d.video_id) AS answered,
       count(*) FILTER (WHERE d.decision_type = 'like') AS liked
FROM shown s
LEFT JOIN src_decisions d
       ON d.user_id = s.user_id AND d.video_id = s.video_id AND d.created_at >= s.served_at
GROUP BY s.day, s.version, s.user_id
