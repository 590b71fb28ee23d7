-- Top-k for a user from the version's HNSW index, decided videos and the deck filter skipped
-- (impressions within the TTL, the deck's cards, mutes; iterative scan; the
-- hnsw.* settings come from the pool's configure), plus one last row (video_id NULL) carrying
-- the user's 200 most recent likes, from which the service names the reasons in memory.
-- Version, dimension and k are literals, so the statement is prepared once per connection with
-- a generic plan that still matches the version's partial HNSW index: no planning per request.
-- The prelude, q and guard slots choose the query vector: a parameter, or the stored user vector
-- when it is newer than the user's last decision (then the whole answer is one round trip; no
-- row at all means "not fresh": the caller computes the vector). {order} is the index's
-- distance expression, or that expression plus zero for an exact scan the index cannot serve.
WITH {prelude}
h AS MATERIALIZED (  -- the deck filter (rpc.sql deck_hidden) plus the cards still queued for the database
    SELECT ids || %(pending)s::text[] AS ids, tags, performers, makers, n_mutes
    FROM twotower.deck_hidden(%(user_id)s, %(imp)s, %(deck)s)
),
c AS MATERIALIZED (
    SELECT e.video_id, e.embedding::vector({dim}) <#> {q} AS dist
    FROM video_embeddings e
    WHERE e.model_version = {version} AND {guard}{exclude}
      AND NOT (e.video_id = ANY ((SELECT h.ids FROM h)::text[]))
      AND ((SELECT h.n_mutes FROM h) = 0
           OR NOT twotower.is_muted(e.video_id, (SELECT h.tags FROM h), (SELECT h.performers FROM h), (SELECT h.makers FROM h)))
    ORDER BY {order}
    LIMIT {k}
)
SELECT r.video_id, r.score, r.liked FROM (
    SELECT c.video_id, -c.dist AS score, NULL::text[] AS liked FROM c
    UNION ALL
    SELECT NULL, NULL, ARRAY(SELECT d.video_id FROM src_decisions d
                             WHERE d.user_key = twotower.user_key(%(user_id)s) AND d.decision_type = 'like'
                             ORDER BY d.created_at DESC LIMIT 200)
    WHERE {guard}
) r
ORDER BY r.score DESC NULLS LAST;
