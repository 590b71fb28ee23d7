-- The swipe deck's SQL (run by every `twotower db init` before rpc.sql, whose
-- twotower.recommend calls it, and called by the service's statements too): the deck filter
-- (impressions, deck ids, mutes), the re-rank (MMR diversity, nopes), exploration for new
-- videos, onboarding from sign-up picks and the demographic cold start. One implementation for
-- every path.

-- The deck's filter for one user (every path uses it): the videos kept out of their decks (cards
-- served within the impression TTL and not answered, unless p_exclude_impressions is false; the
-- cards of p_deck_id whenever given; muted videos), the tags, performers and makers they muted,
-- and whether a card served to them is past the TTL and still unanswered (stale; false with
-- impressions off, or serving.impression_discount 0): without one, the re-rank's impression
-- discount has nothing to do and the plain ranking stands. (Answered cards keep their impression
-- row; the probe stops at the first unanswered one.)
DROP FUNCTION IF EXISTS twotower.deck_hidden(text, boolean, text);  -- before stale
CREATE OR REPLACE FUNCTION twotower.deck_hidden(p_user_id text, p_exclude_impressions boolean DEFAULT true,
                                                p_deck_id text DEFAULT NULL,
                                                OUT ids text[], OUT muted_ids text[], OUT tags text[],
                                                OUT performers text[], OUT makers text[], OUT n_mutes integer,
                                                OUT stale boolean)
LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH ttl AS (SELECT now() - make_interval(secs => coalesce((SELECT value::float8 FROM settings
                                                            WHERE key = 'impression_ttl_seconds'), 86400)) AS since)
SELECT ARRAY(SELECT i.video_id FROM impressions i
             WHERE i.user_id = p_user_id
               AND ((p_exclude_impressions AND i.last_served_at > (SELECT since FROM ttl)) OR i.deck_id = p_deck_id)
             UNION ALL SELECT m.value FROM user_mutes m WHERE m.user_id = p_user_id AND m.kind = 'video'),
       coalesce(array_agg(m.value ORDER BY m.created_at) FILTER (WHERE m.kind = 'video'), '{}'),
       coalesce(array_agg(m.value) FILTER (WHERE m.kind = 'tag'), '{}'),
       coalesce(array_agg(m.value) FILTER (WHERE m.kind = 'performer'), '{}'),
       coalesce(array_agg(m.value) FILTER (WHERE m.kind = 'maker'), '{}'),
       count(*) FILTER (WHERE m.kind <> 'video')::integer,
       CASE WHEN p_exclude_impressions
                 AND coalesce((SELECT value::float8 FROM settings WHERE key = 'impression_discount'), 0.5) > 0 THEN EXISTS (
           SELECT 1 FROM impressions i WHERE i.user_id = p_user_id AND i.last_served_at <= (SELECT since FROM ttl)
             AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id)
                                                           AND d.video_key = twotower.video_key(i.video_id)))
       ELSE false END
FROM user_mutes m WHERE m.user_id = p_user_id
$$;

-- Whether a video carries a muted tag, performer or maker. Callers test n_mutes first, so a
-- user without mutes (nearly everyone) never pays for the probes.
CREATE OR REPLACE FUNCTION twotower.is_muted(p_video_id text, p_tags text[], p_performers text[], p_makers text[])
RETURNS boolean LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
SELECT (cardinality(p_tags) > 0 AND EXISTS (SELECT 1 FROM src_video_tags t WHERE t.video_key = twotower.video_key(p_video_id)
                                             AND t.tag_name = ANY (p_tags)))
    OR (cardinality(p_performers) > 0 AND EXISTS (SELECT 1 FROM src_video_performers p
                                                  WHERE p.video_key = twotower.video_key(p_video_id)
                                                    AND p.performer_name = ANY (p_performers)))
    OR (cardinality(p_makers) > 0 AND EXISTS (SELECT 1 FROM src_videos v WHERE v.video_key = twotower.video_key(p_video_id)
                                              AND v.maker = ANY (p_makers)))
$$;

DROP FUNCTION IF EXISTS twotower.deck_diversity(text, double precision);  -- inlined where the deck is built

-- How many candidates MMR re-ranks for a deck of p_limit (the plain ranking needs p_limit).
CREATE OR REPLACE FUNCTION twotower.mmr_pool(p_limit integer, p_diversity double precision)
RETURNS integer LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
SELECT CASE WHEN p_diversity > 0 THEN greatest(p_limit, least(4 * p_limit, 200)) ELSE p_limit END
$$;

-- What the re-rank demotes the neighbours of, each with its weight: the user's 20 latest nopes
-- (settings 'nope_weight', from serving.nope_weight, where above 0) and the videos they muted
-- (p_muted, their 50 latest, 'mute_weight'): a muted video never comes back, and "less of this"
-- also pushes down what looks like it. Empty where both weights are 0.
DROP FUNCTION IF EXISTS twotower.recent_nopes(text);  -- became negatives
CREATE OR REPLACE FUNCTION twotower.negatives(p_user_id text, p_muted text[], OUT ids text[], OUT weights float8[])
LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH w AS (SELECT coalesce(max(value::float8) FILTER (WHERE key = 'nope_weight'), 0) AS nope,
                  coalesce(max(value::float8) FILTER (WHERE key = 'mute_weight'), 0.5) AS mute
           FROM settings WHERE key IN ('nope_weight', 'mute_weight')),
n AS (SELECT v, x FROM (SELECT d.video_id AS v, (SELECT nope FROM w) AS x FROM src_decisions d
                        WHERE (SELECT nope FROM w) > 0 AND d.user_key = twotower.user_key(p_user_id)
                          AND d.decision_type = 'nope' ORDER BY d.created_at DESC, d.video_id LIMIT 20) a
      UNION ALL
      SELECT v, x FROM (SELECT m.v, (SELECT mute FROM w) AS x FROM unnest(p_muted) WITH ORDINALITY AS m(v, o)
                        WHERE (SELECT mute FROM w) > 0 ORDER BY m.o DESC LIMIT 50) b)
SELECT coalesce(array_agg(v), '{}'), coalesce(array_agg(x), '{}') FROM n
$$;

-- Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998) over the version's item vectors
-- and the videos' tags, with two more terms: from candidates in ranking order, take p_k greedily,
-- each maximising
--     (1 - p_diversity) * relevance * (1 - p_discount) ^ (times served to p_user_id, unanswered)
--         - p_diversity * (highest likeness to a card already taken)
--         - (highest of weight_j * cosine to negative j: a recent nope, a muted video),
-- relevance being the score rescaled to 0..1 over the candidates, cosines floored at 0, and the
-- likeness of two cards the higher of their vectors' cosine and their tags' Jaccard overlap (over
-- 1024-bit sketches, pgvector's <%>: a spurious overlap needs two tags in one bit): item
-- vectors follow co-likes, which tags only loosely track, so a deck spread over vectors alone can
-- still be one tag over and over (tests/test_deck_diversity.py measured it). The
-- discount is impression discounting (Lee et al., KDD 2014: a card shown again and again without
-- an answer is worth less each time); a card in the pool was served before only if its
-- impression is past the TTL (or impressions are off, and then callers pass no user).
-- p_diversity 0 with neither negatives nor stale impressions is the plain ranking (the first
-- p_k); ties go to the better-ranked candidate. Every path (the service's statement,
-- twotower.recommend, so recommend_videos and the Edge Function) calls this one.
DROP FUNCTION IF EXISTS twotower.mmr(text, text[], double precision[], integer, double precision);
DROP FUNCTION IF EXISTS twotower.mmr(text, text[], double precision[], integer, double precision, text[], double precision);
CREATE OR REPLACE FUNCTION twotower.mmr(p_version text, p_ids text[], p_scores double precision[], p_k integer,
                                        p_diversity double precision, p_negatives text[] DEFAULT '{}',
                                        p_negative_weights double precision[] DEFAULT '{}',
                                        p_user_id text DEFAULT NULL, p_discount double precision DEFAULT 0)
RETURNS TABLE (video_id text, score double precision, ord integer)
LANGUAGE plpgsql STABLE SET search_path = twotower, extensions, public, pg_catalog AS $fn$
#variable_conflict use_column
DECLARE
    n integer := coalesce(cardinality(p_ids), 0);
    d float8 := least(greatest(coalesce(p_diversity, 0), 0), 1);
    w boolean := coalesce(cardinality(p_negatives), 0) > 0;
    g float8 := CASE WHEN p_user_id IS NULL THEN 0 ELSE least(greatest(coalesce(p_discount, 0), 0), 1) END;
    vecs vector[];
    sketch bit(1024)[];
    rel float8[];
    near float8[];
    noped float8[];
    taken boolean[];
    lo float8;
    hi float8;
    best integer;
    best_v float8;
    v float8;
    sim float8;
BEGIN
    IF n = 0 OR (d = 0 AND NOT w AND g = 0) THEN
        RETURN QUERY SELECT f.v, f.s, f.o::integer FROM unnest(p_ids, p_scores) WITH ORDINALITY AS f(v, s, o)
                     WHERE f.o <= p_k ORDER BY f.o;
        RETURN;
    END IF;
    IF d = 0 AND NOT w THEN  -- the discount alone: one sort, no greedy loop (a returning user's usual case)
        RETURN QUERY
        SELECT r.v, r.s, (row_number() OVER (ORDER BY r.x DESC, r.o))::integer
        FROM (SELECT f.v, f.s, f.o,
                     CASE WHEN max(f.s) OVER () > min(f.s) OVER ()
                          THEN (f.s - min(f.s) OVER ()) / (max(f.s) OVER () - min(f.s) OVER ()) ELSE 1 END
                     * (1 - g) ^ coalesce(i.times_served, 0) AS x
              FROM unnest(p_ids, p_scores) WITH ORDINALITY AS f(v, s, o)
              LEFT JOIN impressions i ON i.user_id = p_user_id AND i.video_id = f.v) r
        ORDER BY r.x DESC, r.o LIMIT p_k;
        RETURN;
    END IF;
    SELECT array_agg(e.embedding ORDER BY f.o) INTO vecs
    FROM unnest(p_ids) WITH ORDINALITY AS f(v, o)
    LEFT JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = f.v;
    IF d > 0 THEN  -- each candidate's tags as a 1024-bit sketch (a bit per tag name's hash), one statement
        SELECT array_agg(t.b ORDER BY f.o) INTO sketch
        FROM unnest(p_ids) WITH ORDINALITY AS f(v, o)
        LEFT JOIN LATERAL (SELECT bit_or(set_bit(B'0'::bit(1024), hashtext(s.tag_name) & 1023, 1)) AS b
                           FROM src_video_tags s WHERE s.video_key = twotower.video_key(f.v)) t ON true;
    END IF;
    SELECT min(s), max(s) INTO lo, hi FROM unnest(p_scores) AS s;
    rel := array_fill(1::float8, ARRAY[n]);
    near := array_fill(0::float8, ARRAY[n]);
    noped := array_fill(0::float8, ARRAY[n]);
    taken := array_fill(false, ARRAY[n]);
    IF hi > lo THEN
        FOR i IN 1..n LOOP
            rel[i] := (p_scores[i] - lo) / (hi - lo);
        END LOOP;
    END IF;
    IF g > 0 THEN  -- impression discounting: each time served without an answer costs a share
        SELECT array_agg(f.r * (1 - g) ^ coalesce(i.times_served, 0) ORDER BY f.o) INTO rel
        FROM unnest(rel) WITH ORDINALITY AS f(r, o)
        LEFT JOIN impressions i ON i.user_id = p_user_id AND i.video_id = p_ids[f.o];
    END IF;
    IF w THEN  -- each candidate's highest weighted cosine to a negative, in one statement
        SELECT array_agg(coalesce(x.m, 0) ORDER BY x.o) INTO noped FROM (
            SELECT f.o, greatest(max(CASE WHEN 1 - (c.embedding <=> z.embedding) <> 'NaN'::float8
                                     THEN z.w * (1 - (c.embedding <=> z.embedding)) END), 0) AS m
            FROM unnest(p_ids) WITH ORDINALITY AS f(v, o)
            LEFT JOIN video_embeddings c ON c.model_version = p_version AND c.video_id = f.v
            LEFT JOIN (SELECT e.embedding, nw.w FROM unnest(p_negatives, p_negative_weights) AS nw(v, w)
                       JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = nw.v
                       WHERE nw.w > 0) z ON true
            GROUP BY f.o) x;
    END IF;
    FOR step IN 1..least(p_k, n) LOOP
        best := NULL;
        FOR i IN 1..n LOOP
            CONTINUE WHEN taken[i];
            v := (1 - d) * rel[i] - d * near[i] - noped[i];
            IF best IS NULL OR v > best_v THEN
                best := i;
                best_v := v;
            END IF;
        END LOOP;
        taken[best] := true;
        video_id := p_ids[best];
        score := p_scores[best];
        ord := step;
        RETURN NEXT;
        CONTINUE WHEN d = 0;
        FOR i IN 1..n LOOP
            CONTINUE WHEN taken[i];
            sim := coalesce(1 - (sketch[i] <%> sketch[best]), 0);  -- Jaccard of the tag sketches
            IF vecs[i] IS NOT NULL AND vecs[best] IS NOT NULL THEN
                v := 1 - (vecs[i] <=> vecs[best]);
                IF v > sim AND v <> 'NaN'::float8 THEN  -- (NaN: a zero vector; PostgreSQL sorts it highest)
                    sim := v;
                END IF;
            END IF;
            IF sim > near[i] THEN
                near[i] := sim;
            END IF;
        END LOOP;
    END LOOP;
END
$fn$;

-- Remember a served deck (upsert: the count of times served grows, the deck id is the latest).
CREATE OR REPLACE FUNCTION twotower.remember_impressions(p_user_id text, p_video_ids text[], p_deck_id text DEFAULT NULL,
                                                         p_at timestamptz DEFAULT now())
RETURNS void LANGUAGE sql VOLATILE SET search_path = twotower, pg_catalog AS $$
INSERT INTO impressions AS i (user_id, video_id, first_served_at, last_served_at, deck_id)
SELECT p_user_id, v, p_at, p_at, p_deck_id FROM unnest(p_video_ids) AS v GROUP BY v
ON CONFLICT (user_id, video_id) DO UPDATE
SET last_served_at = greatest(i.last_served_at, excluded.last_served_at), times_served = i.times_served + 1,
    deck_id = coalesce(excluded.deck_id, i.deck_id)
$$;

-- A user's demographic segment: "age_range/region" of their profile, NULL unless both are set.
CREATE OR REPLACE FUNCTION twotower.segment_of(p_user_id text)
RETURNS text LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
SELECT p.age_range || '/' || p.region FROM src_profiles p
WHERE p.user_key = twotower.user_key(p_user_id) AND p.age_range IS NOT NULL AND p.region IS NOT NULL
LIMIT 1
$$;

-- Each segment's popular-and-recent list (as popular_videos, over the segment's likes), for the
-- segments with at least settings 'segment_min_decisions' (serving.segment_min_decisions, written
-- by `db init`) decisions in the last 30 days of activity; the p_n best of each.
CREATE OR REPLACE FUNCTION twotower.segment_videos(p_n integer)
RETURNS TABLE (segment text, video_id text, score double precision)
LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH ref AS (SELECT coalesce(max(created_at), now()) AS t FROM src_decisions),
d AS (
    SELECT p.age_range || '/' || p.region AS segment, d.video_id, d.decision_type
    FROM src_decisions d JOIN src_profiles p ON p.user_key = d.user_key, ref
    WHERE d.created_at >= ref.t - interval '30 days' AND p.age_range IS NOT NULL AND p.region IS NOT NULL
),
big AS (
    SELECT d.segment FROM d GROUP BY d.segment
    HAVING count(*) >= coalesce((SELECT value::float8 FROM settings WHERE key = 'segment_min_decisions'), 500)
),
likes AS (
    SELECT d.segment, d.video_id, count(*) AS likes FROM d JOIN big ON big.segment = d.segment
    WHERE d.decision_type = 'like' GROUP BY d.segment, d.video_id
),
scored AS (
    SELECT l.segment, l.video_id, (l.likes + 1)::float8
           * (1.0 + 1.0 / (1.0 + greatest(extract(epoch FROM (ref.t - coalesce(v.product_released_at, v.created_at)))
                                          / 86400.0, 0) / 30.0)) AS score
    FROM likes l JOIN src_videos v ON v.id = l.video_id CROSS JOIN ref
),
ranked AS (
    SELECT s.*, row_number() OVER (PARTITION BY s.segment ORDER BY s.score DESC, s.video_id) AS r FROM scored s
)
SELECT r.segment, r.video_id, r.score FROM ranked r WHERE r.r <= p_n ORDER BY 1, 3 DESC, 2
$$;

-- Whether this transaction should recompute the cache p_name ('popular', 'explore'): its time
-- (settings p_name_at) is older than p_age and no one else is at it (a transaction advisory
-- lock; the others serve what they have). If so, the time is stamped now (seen at commit).
CREATE OR REPLACE FUNCTION twotower.claim_refresh(p_name text, p_age interval)
RETURNS boolean LANGUAGE plpgsql VOLATILE SET search_path = twotower, pg_catalog AS $fn$
BEGIN
    IF coalesce((SELECT value::timestamptz FROM settings WHERE key = p_name || '_at'), '-infinity') > now() - p_age
       OR NOT pg_try_advisory_xact_lock(hashtext('twotower.' || p_name)) THEN
        RETURN false;
    END IF;
    INSERT INTO settings (key, value) VALUES (p_name || '_at', now()::text)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    RETURN true;
END
$fn$;

-- Recompute explore_cache when it is older than p_age (one caller at a time): among the newest
-- 2,000 videos, those with fewer than 20 answers, newest first, at most 500, with their counts;
-- and explore_vectors, their item vectors in each active version.
CREATE OR REPLACE FUNCTION twotower.refresh_explore(p_age interval)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = twotower, pg_catalog AS $fn$
BEGIN
    IF NOT claim_refresh('explore', p_age) THEN
        RETURN;
    END IF;
    DELETE FROM explore_cache;
    INSERT INTO explore_cache (video_id, likes, nopes, released_at)
    WITH recent AS (
        SELECT v.id, v.video_key, coalesce(v.product_released_at, v.created_at) AS at FROM src_videos v
        ORDER BY coalesce(v.product_released_at, v.created_at) DESC NULLS LAST, v.id LIMIT 2000
    )
    SELECT r.id, count(*) FILTER (WHERE d.decision_type = 'like'), count(*) FILTER (WHERE d.decision_type = 'nope'), r.at
    FROM recent r LEFT JOIN src_decisions d ON d.video_key = r.video_key
    GROUP BY r.id, r.at
    HAVING count(d.video_key) < 20
    ORDER BY r.at DESC NULLS LAST, r.id LIMIT 500;
    DELETE FROM explore_vectors;
    INSERT INTO explore_vectors (model_version, video_id, embedding)
    SELECT e.model_version, e.video_id, e.embedding
    FROM explore_cache x JOIN video_embeddings e ON e.video_id = x.video_id
    JOIN embedding_model_versions m ON m.version = e.model_version AND m.is_active;
END
$fn$;

-- How many cards of a deck of p_limit go to exploration: the request's share, else the
-- installation's (settings 'explore_share', written by `db init` from serving.explore_share),
-- rounded half up.
CREATE OR REPLACE FUNCTION twotower.explore_count(p_limit integer, p_share double precision DEFAULT NULL)
RETURNS integer LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
SELECT least(p_limit, floor(p_limit * coalesce(p_share, (SELECT value::float8 FROM settings WHERE key = 'explore_share'), 0.2)
                            + 0.5))::integer
$$;

-- Thompson sampling over explore_cache for one user: each candidate (not decided, not hidden by
-- the deck filter, not muted, not already in p_taken) has a Beta posterior whose prior is the
-- model's score for this user (its rank among the candidates, mapped to a like rate of 0.1..0.9,
-- worth 4 answers) updated by the video's observed likes and nopes; one draw each (the normal
-- approximation of the Beta, so plain SQL can draw it), the p_n highest win. Every path calls
-- this one function.
CREATE OR REPLACE FUNCTION twotower.explore_pick(p_version text, p_q vector, p_user_id text, p_n integer,
                                                 p_hidden text[], p_tags text[], p_performers text[], p_makers text[],
                                                 p_n_mutes integer, p_taken text[])
RETURNS TABLE (video_id text, score double precision)
LANGUAGE sql VOLATILE SET search_path = twotower, extensions, public, pg_catalog AS $$
WITH v AS (  -- the pool's vectors: the copy (explore_vectors), else the version's own rows
    SELECT ev.video_id, ev.embedding FROM explore_vectors ev WHERE ev.model_version = p_version
    UNION ALL
    SELECT e.video_id, e.embedding FROM explore_cache x
    JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = x.video_id
    WHERE NOT EXISTS (SELECT 1 FROM explore_vectors ev WHERE ev.model_version = p_version)
), c AS (
    SELECT x.video_id, x.likes, x.nopes, -(e.embedding <#> p_q) AS s
    FROM explore_cache x JOIN v e ON e.video_id = x.video_id
    WHERE p_n > 0 AND p_q IS NOT NULL
      AND NOT (x.video_id = ANY (p_hidden)) AND NOT (x.video_id = ANY (p_taken))
      AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id)
                      AND d.video_key = twotower.video_key(x.video_id))
      AND (p_n_mutes = 0 OR NOT twotower.is_muted(x.video_id, p_tags, p_performers, p_makers))
), p AS (
    SELECT c.video_id, c.s, 4 * (0.1 + 0.8 * cume_dist() OVER (ORDER BY c.s)) + c.likes AS a,
           4 * (0.9 - 0.8 * cume_dist() OVER (ORDER BY c.s)) + c.nopes AS b
    FROM c
)
SELECT p.video_id, p.s FROM p
ORDER BY p.a / (p.a + p.b) + sqrt(p.a * p.b / ((p.a + p.b) ^ 2 * (p.a + p.b + 1)))
         * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) DESC
LIMIT greatest(p_n, 0)
$$;

-- The ids of the videos carrying one of the user's sign-up picks (a tag, performer or maker).
CREATE OR REPLACE FUNCTION twotower.picked_videos(p_user_id text)
RETURNS TABLE (id text) LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH p AS (SELECT u.kind, u.value FROM user_preferences u WHERE u.user_id = p_user_id),
m AS (
    SELECT t.video_key FROM src_video_tags t JOIN p ON p.kind = 'tag' AND t.tag_name = p.value
    UNION SELECT f.video_key FROM src_video_performers f JOIN p ON p.kind = 'performer' AND f.performer_name = p.value
    UNION SELECT v.video_key FROM src_videos v JOIN p ON p.kind = 'maker' AND v.maker = p.value
)
SELECT v.id FROM m JOIN src_videos v ON v.video_key = m.video_key
$$;

-- Onboarding: a first vector for a user without likes, from what they picked at sign-up: the
-- vector of a user who liked the 20 most popular videos carrying a pick (tag, performer or
-- maker). Where the version keeps history rows (user_vector sql or sql+onnx) that is their sum,
-- as a real like history is summed; else the mean of those videos' item vectors (candidates
-- scored by how alike they are to them). NULL without picks, or without a matching video the
-- version knows. Every path calls this one function.
CREATE OR REPLACE FUNCTION twotower.preference_vector(p_version text, p_user_id text)
RETURNS vector LANGUAGE sql STABLE SET search_path = twotower, extensions, public, pg_catalog AS $$
WITH top AS (
    SELECT v.id FROM picked_videos(p_user_id) m JOIN src_videos v ON v.id = m.id
    JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = v.id
    LEFT JOIN popular_cache pc ON pc.video_id = v.id
    ORDER BY pc.score DESC NULLS LAST, v.id LIMIT 20
)
SELECT CASE WHEN ver.user_vector IN ('sql', 'sql+onnx')
            THEN (SELECT sum(h.embedding) FROM top JOIN history_embeddings h ON h.model_version = p_version AND h.video_id = top.id)
            ELSE (SELECT avg(e.embedding) FROM top JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = top.id)
       END
FROM embedding_model_versions ver WHERE ver.version = p_version
$$;

-- The onboarding deck: the videos carrying one of the user's picks, ranked by their preference
-- vector (an exact scan over those videos: a new user's first decks only), decided, hidden and
-- muted ones skipped.
CREATE OR REPLACE FUNCTION twotower.onboarding_deck(p_version text, p_q vector, p_user_id text, p_n integer,
                                                    p_hidden text[], p_tags text[], p_performers text[], p_makers text[],
                                                    p_n_mutes integer)
RETURNS TABLE (video_id text, score double precision, ord bigint)
LANGUAGE sql STABLE SET search_path = twotower, extensions, public, pg_catalog AS $$
WITH c AS (
    SELECT v.id, -(e.embedding <#> p_q) AS s FROM picked_videos(p_user_id) m JOIN src_videos v ON v.id = m.id
    JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = v.id
    WHERE p_q IS NOT NULL AND NOT (v.id = ANY (p_hidden))
      AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.video_key = v.video_key)
      AND (p_n_mutes = 0 OR NOT twotower.is_muted(v.id, p_tags, p_performers, p_makers))
    ORDER BY 2 DESC, 1 LIMIT p_n
)
SELECT c.id, c.s, row_number() OVER (ORDER BY c.s DESC, c.id) FROM c ORDER BY 3
$$;
