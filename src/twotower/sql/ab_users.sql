-- Per A/B arm, user and UTC day of serving: lists served, videos shown, how many of them the user then decided
-- (a decision counts for a list when it came after the list was served) and liked. The user is
-- the unit the arms are assigned by (a stable hash), so the statistics work on these rows summed
-- over the days (each list belongs to one day; the dashboard also shows them per day); summed per
-- version they are evaluate-online's totals. %(fallback)s: count the fallback lists
-- too (served while the database was down: no arm chose them, so A/B statistics leave them out).
WITH shown AS (
    SELECT l.id, l.user_id, coalesce(l.model_version, '(' || l.source || ')') AS version, l.served_at,
           date_trunc('day', l.served_at AT TIME ZONE 'UTC')::date AS day, unnest(l.video_ids) AS video_id
    FROM recommendation_log l
    WHERE l.served_at >= %(since)s AND (%(fallback)s OR l.source <> 'fallback')
)
SELECT s.day, s.version, s.user_id,
       count(DISTINCT s.id) AS lists,
       count(*) AS shown,
       count(d.video_id) AS answered,
       count(*) FILTER (WHERE d.decision_type = 'like') AS liked
FROM shown s
LEFT JOIN src_decisions d
       ON d.user_id = s.user_id AND d.video_id = s.video_id AND d.created_at >= s.served_at
GROUP BY s.day, s.version, s.user_id;
