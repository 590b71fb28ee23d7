-- Top-k videos for a query vector from one version's HNSW index, skipping videos the user has
-- decided. pgvector >= 0.8 iterative scans keep searching when the filter removes rows
-- (SET LOCAL hnsw.iterative_scan by the caller); relaxed order is re-sorted outside.
WITH c AS MATERIALIZED (
    SELECT e.video_id, e.embedding::vector({dim}) <#> %(q)s::vector({dim}) AS dist
    FROM video_embeddings e
    WHERE e.model_version = %(version)s
      AND NOT EXISTS (SELECT 1 FROM src_decisions d
                      WHERE d.user_key = twotower.user_key(%(user_id)s) AND d.video_key = twotower.video_key(e.video_id))
    ORDER BY e.embedding::vector({dim}) <#> %(q)s::vector({dim})
    LIMIT %(k)s
)
SELECT video_id, -dist AS score FROM c ORDER BY dist
