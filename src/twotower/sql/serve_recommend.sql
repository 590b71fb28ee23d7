-- Top-k for a user vector from the version's HNSW index, decided videos skipped (iterative
-- scan, set by the caller), with reasons: tags/performers the video shares with the user's likes.
WITH c AS MATERIALIZED (
    SELECT e.video_id, e.embedding::vector({dim}) <#> %(q)s::vector({dim}) AS dist
    FROM video_embeddings e
    WHERE e.model_version = %(version)s
      AND (NOT %(exclude)s OR NOT EXISTS (SELECT 1 FROM user_video_decisions d
                                          WHERE d.user_id = %(user_id)s AND d.video_id = e.video_id))
    ORDER BY e.embedding::vector({dim}) <#> %(q)s::vector({dim})
    LIMIT %(k)s
), liked AS MATERIALIZED (
    SELECT d.video_id FROM user_video_decisions d WHERE d.user_id = %(user_id)s AND d.decision_type = 'like'
    ORDER BY d.created_at DESC LIMIT 200
)
SELECT c.video_id, -c.dist AS score,
       ARRAY(SELECT t.tag_name FROM video_tags t WHERE t.video_id = c.video_id
             AND t.tag_name IN (SELECT t2.tag_name FROM liked l JOIN video_tags t2 ON t2.video_id = l.video_id)
             ORDER BY t.tag_name LIMIT 3) AS tags,
       ARRAY(SELECT p.performer_name FROM video_performers p WHERE p.video_id = c.video_id
             AND p.performer_name IN (SELECT p2.performer_name FROM liked l JOIN video_performers p2 ON p2.video_id = l.video_id)
             ORDER BY p.performer_name LIMIT 2) AS performers
FROM c ORDER BY c.dist;
