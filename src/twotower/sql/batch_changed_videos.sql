-- Videos that are new, or whose inputs changed since they were embedded for this version (their
-- fingerprint differs, migration 005), or that have no embedding yet (a killed run's leftovers).
SELECT f.video_id FROM video_fingerprints() f
LEFT JOIN video_embeddings e ON e.model_version = %(version)s AND e.video_id = f.video_id
WHERE e.video_id IS NULL OR e.fingerprint IS DISTINCT FROM f.fingerprint
ORDER BY f.video_id;
