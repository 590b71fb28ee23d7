-- Online metrics per served model version: of the videos shown in served lists, how many the
-- user then decided (CTR: answered/shown) and liked (like rate: likes/answered, likes/shown).
-- A decision counts for a list when it came after the list was served.
WITH shown AS (
    SELECT l.id, l.user_id, coalesce(l.model_version, '(' || l.source || ')') AS version, l.served_at,
           unnest(l.video_ids) AS video_id
    FROM recommendation_log l
    WHERE l.served_at >= %(since)s
)
SELECT s.version,
       count(DISTINCT s.id) AS lists,
       count(*) AS shown,
       count(d.video_id) AS answered,
       count(*) FILTER (WHERE d.decision_type = 'like') AS liked
FROM shown s
LEFT JOIN src_decisions d
       ON d.user_id = s.user_id AND d.video_id = s.video_id AND d.created_at >= s.served_at
GROUP BY s.version ORDER BY s.version;
