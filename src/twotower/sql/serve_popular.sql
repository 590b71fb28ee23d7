-- Popular-and-recent videos (cold start and the in-memory fallback): likes in the last 30 days
-- of activity, plus a small boost for videos released recently.
WITH ref AS (SELECT coalesce(max(created_at), now()) AS t FROM src_decisions),
pop AS (
    SELECT d.video_id, count(*) AS likes
    FROM src_decisions d, ref
    WHERE d.decision_type = 'like' AND d.created_at >= ref.t - interval '30 days'
    GROUP BY d.video_id
)
SELECT v.id, (coalesce(p.likes, 0) + 1)::float8
       * (1.0 + 1.0 / (1.0 + greatest(extract(epoch FROM (ref.t - coalesce(v.product_released_at, v.created_at))) / 86400.0, 0) / 30.0)) AS score
FROM src_videos v CROSS JOIN ref LEFT JOIN pop p ON p.video_id = v.id
ORDER BY score DESC, v.id
LIMIT %(n)s;
