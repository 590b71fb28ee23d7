-- Remember, with the embeddings just written, the fingerprint of what they were computed from.
UPDATE video_embeddings e SET fingerprint = f.fingerprint
FROM video_fingerprints(%(ids)s::text[]) f
WHERE e.model_version = %(version)s AND e.video_id = f.video_id;
