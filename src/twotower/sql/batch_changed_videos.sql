-- Videos that are new or changed since the watermark, or that have no embedding for this
-- version yet (so a killed run's leftovers are picked up again).
SELECT v.id FROM src_videos v
WHERE (%(since)s::timestamptz IS NULL OR v.updated_at >= %(since)s OR v.created_at >= %(since)s)
   OR NOT EXISTS (SELECT 1 FROM video_embeddings e WHERE e.model_version = %(version)s AND e.video_id = v.id)
ORDER BY v.id;
