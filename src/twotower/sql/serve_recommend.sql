-- Top-k for a user from the version's HNSW index, decided videos skipped (iterative scan; the
-- hnsw.* settings come from the pool's configure), with reasons: the tags/performers a video
-- shares with the user's recent likes. The prelude, q and guard slots choose the query vector: a
-- parameter, or the stored user vector when it is newer than the user's last decision (then the
-- whole answer is one round trip; no row means "not fresh": the caller computes it).
WITH {prelude}
c AS MATERIALIZED (
    SELECT e.video_id, e.embedding::vector({dim}) <#> {q} AS dist
    FROM video_embeddings e
    WHERE e.model_version = %(version)s AND {guard}
      AND (NOT %(exclude)s OR NOT EXISTS (SELECT 1 FROM user_video_decisions d
                                          WHERE d.user_id = %(user_id)s AND d.video_id = e.video_id))
    ORDER BY e.embedding::vector({dim}) <#> {q}
    LIMIT %(k)s
), liked AS MATERIALIZED (
    SELECT d.video_id FROM user_video_decisions d WHERE d.user_id = %(user_id)s AND d.decision_type = 'like'
    ORDER BY d.created_at DESC LIMIT 200
), terms AS MATERIALIZED (
    SELECT (SELECT array_agg(DISTINCT t.tag_name) FROM liked l JOIN video_tags t ON t.video_id = l.video_id) AS tags,
           (SELECT array_agg(DISTINCT p.performer_name) FROM liked l JOIN video_performers p ON p.video_id = l.video_id) AS performers
)
SELECT c.video_id, -c.dist AS score,
       ARRAY(SELECT t.tag_name FROM video_tags t WHERE t.video_id = c.video_id
             AND t.tag_name = ANY((SELECT tags FROM terms)::text[]) ORDER BY t.tag_name LIMIT 3) AS tags,
       ARRAY(SELECT p.performer_name FROM video_performers p WHERE p.video_id = c.video_id
             AND p.performer_name = ANY((SELECT performers FROM terms)::text[]) ORDER BY p.performer_name LIMIT 2) AS performers
FROM c ORDER BY c.dist;
