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
-- The deck's diversity (as twotower.recommend reads it: the request's, the user's setting, the
-- installation's default), what to demote the neighbours of (twotower.negatives: recent nopes,
-- muted videos, where their weights are above 0) and the impression discount (where the user has
-- an unanswered impression past the TTL): with any of them, the search takes a wider pool (mmr_pool) and
-- twotower.mmr picks the k cards; without, the plain ranking, and mmr is never called. With an
-- explore share, explore_pick's Thompson-sampled new videos follow the ranked rows (explore true);
-- the service deals them into the deck as twotower.recommend does. The likes row's last column is
-- the onboarding fade's count of cards for the user's picks (0 without picks or past the fade).
WITH {prelude}
h AS MATERIALIZED (  -- the deck filter (rpc.sql deck_hidden) plus the cards still queued for the database
    SELECT ids || %(pending)s::text[] AS ids, muted_ids, tags, performers, makers, n_mutes, stale
    FROM twotower.deck_hidden(%(user_id)s, %(imp)s, %(deck)s)
),
dv AS MATERIALIZED (  -- rr: re-rank (diversity, negatives, or stale impressions to discount)
    SELECT x.d, x.neg, x.negw, x.g, x.d > 0 OR cardinality(x.neg) > 0 OR x.g > 0 AS rr,
           twotower.mmr_pool({k}, CASE WHEN x.d > 0 OR cardinality(x.neg) > 0 OR x.g > 0 THEN 1 ELSE 0 END) AS n
    FROM (SELECT y.d, CASE WHEN (SELECT h.stale FROM h) THEN y.g ELSE 0 END AS g,
                 -- negatives only where a weight applies (a function call pays for its SET)
                 CASE WHEN y.on THEN (SELECT n.ids FROM twotower.negatives(%(user_id)s, (SELECT h.muted_ids FROM h)) n)
                      ELSE '{{}}' END AS neg,
                 CASE WHEN y.on THEN (SELECT n.weights FROM twotower.negatives(%(user_id)s, (SELECT h.muted_ids FROM h)) n)
                      ELSE '{{}}' END AS negw
          FROM (SELECT coalesce(%(div)s::float8, (SELECT s.diversity FROM user_settings s WHERE s.user_id = %(user_id)s),
                                max(st.value::float8) FILTER (WHERE st.key = 'diversity'), 0) AS d,
                       coalesce(max(st.value::float8) FILTER (WHERE st.key = 'impression_discount'), 0.5) AS g,
                       coalesce(max(st.value::float8) FILTER (WHERE st.key = 'nope_weight'), 0) > 0
                       OR (coalesce(max(st.value::float8) FILTER (WHERE st.key = 'mute_weight'), 0.5) > 0
                           AND cardinality((SELECT h.muted_ids FROM h)) > 0) AS on
                FROM settings st WHERE st.key IN ('diversity', 'impression_discount', 'nope_weight', 'mute_weight')) y) x
),
xn AS MATERIALIZED (  -- exploration's cards (rpc.sql explore_count, inline)
    SELECT least({k}, floor({k} * coalesce(%(explore)s::float8,
                                           (SELECT value::float8 FROM settings WHERE key = 'explore_share'), 0.2)
                             + 0.5))::integer AS n
),
c AS MATERIALIZED (
    SELECT e.video_id, e.embedding::vector({dim}) <#> {q} AS dist
    FROM video_embeddings e
    WHERE e.model_version = {version} AND {guard}{exclude}
      AND NOT (e.video_id = ANY ((SELECT h.ids FROM h)::text[]))
      AND ((SELECT h.n_mutes FROM h) = 0
           OR NOT twotower.is_muted(e.video_id, (SELECT h.tags FROM h), (SELECT h.performers FROM h), (SELECT h.makers FROM h)))
    ORDER BY {order}
    LIMIT (SELECT dv.n FROM dv)
)
SELECT r.video_id, r.score, r.liked, r.explore, r.onboard FROM (
    SELECT c.video_id, -c.dist AS score, NULL::text[] AS liked, false AS explore, NULL::integer AS onboard,
           row_number() OVER (ORDER BY c.dist) AS ord
    FROM c WHERE NOT (SELECT dv.rr FROM dv)
    UNION ALL
    SELECT m.video_id, m.score, NULL, false, NULL, m.ord
    FROM twotower.mmr({version}, ARRAY(SELECT c.video_id FROM c ORDER BY c.dist), ARRAY(SELECT -c.dist FROM c ORDER BY c.dist),
                      {k}, (SELECT dv.d FROM dv), (SELECT dv.neg FROM dv), (SELECT dv.negw FROM dv),
                      %(user_id)s, (SELECT dv.g FROM dv)) m
    WHERE (SELECT dv.rr FROM dv)
    UNION ALL  -- exploration's picks, after the ranked cards (the service deals them into the deck)
    SELECT x.video_id, x.score, NULL, true, NULL, 100000 + x.o
    FROM twotower.explore_pick({version}, {q}, %(user_id)s, (SELECT xn.n FROM xn), (SELECT h.ids FROM h),
                               (SELECT h.tags FROM h), (SELECT h.performers FROM h), (SELECT h.makers FROM h),
                               (SELECT h.n_mutes FROM h), ARRAY(SELECT c.video_id FROM c)) WITH ORDINALITY AS x(video_id, score, o)
    WHERE (SELECT xn.n FROM xn) > 0 AND {guard}
    UNION ALL
    SELECT NULL, NULL, l.ids, NULL,
           -- the onboarding fade (rpc.sql onboarding_cards, inline): with picks, ceil(k (1 - likes / F))
           CASE WHEN EXISTS (SELECT 1 FROM user_preferences up WHERE up.user_id = %(user_id)s)
                THEN ceil({k} * greatest(0, 1 - cardinality(l.ids)::float8 / greatest(1, coalesce(
                         (SELECT value::float8 FROM settings WHERE key = 'onboarding_fade_likes'), 10))))::integer
                ELSE 0 END,
           NULL
    FROM (SELECT ARRAY(SELECT d.video_id FROM src_decisions d
                       WHERE d.user_key = twotower.user_key(%(user_id)s) AND d.decision_type = 'like'
                       ORDER BY d.created_at DESC LIMIT 200) AS ids) l
    WHERE {guard}
) r
ORDER BY r.ord NULLS LAST;
