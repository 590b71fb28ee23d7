-- Users with decisions since the watermark, or with decisions but no embedding for this version.
SELECT DISTINCT d.user_id FROM src_decisions d
WHERE (%(since)s::timestamptz IS NULL OR d.created_at >= %(since)s)
UNION
SELECT p.user_id FROM src_profiles p
WHERE EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_id = p.user_id)
  AND NOT EXISTS (SELECT 1 FROM user_embeddings e WHERE e.model_version = %(version)s AND e.user_id = p.user_id)
ORDER BY 1;
