-- The SQL serving path (run by every `db init`, after the migrations and security.sql, so a fix
-- here reaches existing installs): recommendations computed inside the database with the same
-- semantics as POST /v1/recommendations, and the thin public wrapper PostgREST exposes,
-- `public.recommend_videos(p_limit, p_user_id)`, called as supabase.rpc('recommend_videos', ...).

-- Feature functions (seed 003 "RPC mode"): the raw aggregates of one user / one video as JSON.
-- twotower.features turns this JSON into exactly the vectors the bulk pipeline builds, so
-- training and serving share one feature definition. Hours are in UTC. Per-user and per-video
-- lookups go through the app's own id types (the views' *_key columns), so the app's indexes
-- serve them whatever its id type. They run as their owner (SECURITY DEFINER, search_path
-- pinned); a caller acting as `authenticated` gets only its own user's features (NULL for
-- anyone else), and `anon` may not call them at all (security.sql).
CREATE OR REPLACE FUNCTION twotower.get_user_embedding_features(
    p_user_id text, p_as_of timestamptz DEFAULT now(), p_max_history integer DEFAULT 200)
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twotower, pg_catalog AS $$
WITH allowed AS (
    SELECT current_setting('role') NOT IN ('authenticated', 'anon')
           OR p_user_id = (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub') AS ok
), d AS (
    SELECT d.video_id, d.video_key, d.decision_type, d.created_at, v.price
    FROM src_decisions d LEFT JOIN src_videos v ON v.video_key = d.video_key
    WHERE d.user_key = twotower.user_key(p_user_id) AND d.created_at < p_as_of AND (SELECT ok FROM allowed)
), likes AS (
    SELECT * FROM d WHERE decision_type = 'like'
), p AS (
    SELECT created_at FROM src_profiles WHERE user_key = twotower.user_key(p_user_id) AND (SELECT ok FROM allowed)
)
SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM p) AND NOT EXISTS (SELECT 1 FROM d) THEN NULL ELSE
jsonb_build_object(
    'user_id', p_user_id,
    'as_of', p_as_of,
    'created_at', (SELECT created_at FROM p),
    'like_count', (SELECT count(*) FROM likes),
    'nope_count', (SELECT count(*) FROM d WHERE decision_type = 'nope'),
    'mean_price', (SELECT avg(price) FROM likes),
    'median_price', (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY price) FROM likes WHERE price IS NOT NULL),
    'last_like_at', (SELECT max(created_at) FROM likes),
    'avg_like_hour', (SELECT avg(extract(hour FROM created_at AT TIME ZONE 'UTC'))::float8 FROM likes),
    'liked_tags', (SELECT coalesce(jsonb_object_agg(tag_name, n), '{}'::jsonb) FROM (
        SELECT t.tag_name, count(*) AS n FROM likes l JOIN src_video_tags t ON t.video_key = l.video_key
        GROUP BY t.tag_name) x),
    'liked_performers', (SELECT coalesce(jsonb_object_agg(performer_name, n), '{}'::jsonb) FROM (
        SELECT t.performer_name, count(*) AS n FROM likes l JOIN src_video_performers t ON t.video_key = l.video_key
        GROUP BY t.performer_name) x),
    'liked_video_ids', (SELECT coalesce(jsonb_agg(video_id ORDER BY created_at DESC, video_id), '[]'::jsonb) FROM (
        SELECT video_id, created_at FROM likes ORDER BY created_at DESC, video_id LIMIT p_max_history) h),
    'decided_count', (SELECT count(*) FROM d)
) END
$$;

CREATE OR REPLACE FUNCTION twotower.get_item_embedding_features(p_video_id text)
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER SET search_path = twotower, pg_catalog AS $$
SELECT jsonb_build_object(
    'video_id', v.id, 'price', v.price, 'duration_seconds', v.duration_seconds,
    'product_released_at', v.product_released_at, 'genre', v.genre, 'maker', v.maker,
    'title', v.title, 'description', v.description,
    'updated_at', v.updated_at,
    'tags', coalesce((SELECT jsonb_agg(tag_name ORDER BY tag_name) FROM src_video_tags WHERE video_key = v.video_key), '[]'::jsonb),
    'performers', coalesce((SELECT jsonb_agg(performer_name ORDER BY performer_name) FROM src_video_performers WHERE video_key = v.video_key), '[]'::jsonb))
FROM src_videos v WHERE v.video_key = twotower.video_key(p_video_id)
$$;

-- The user's vector for a SQL-servable version: the sum of the history rows of their latest
-- likes, as the ONNX user tower computes it (most recent first, at most max_history; videos the
-- model does not know add nothing). NULL for a user without likes.
CREATE OR REPLACE FUNCTION twotower.sql_user_vector(p_version text, p_user_id text, p_max_history integer)
RETURNS vector LANGUAGE sql STABLE SET search_path = twotower, extensions, public, pg_catalog AS $$
SELECT sum(h.embedding)
FROM (SELECT d.video_id FROM src_decisions d
      WHERE d.user_key = twotower.user_key(p_user_id) AND d.decision_type = 'like' AND d.created_at < now()
      ORDER BY d.created_at DESC, d.video_id LIMIT p_max_history) l
JOIN history_embeddings h ON h.model_version = p_version AND h.video_id = l.video_id
$$;

-- The A/B arm, as the service assigns it: sha256(salt:user) -> [0, 1) against the cumulative
-- traffic shares of the active versions in version order; NULL when none is active.
CREATE OR REPLACE FUNCTION twotower.ab_version(p_user_id text)
RETURNS text LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH s AS (
    SELECT version, sum(traffic_share) OVER (ORDER BY version) / sum(traffic_share) OVER () AS upto,
           count(*) OVER () AS n, row_number() OVER (ORDER BY version DESC) AS from_end
    FROM embedding_model_versions WHERE is_active AND traffic_share > 0
), h AS (
    SELECT (CASE WHEN b < 0 THEN b::numeric + 18446744073709551616 ELSE b::numeric END
            / 18446744073709551616)::float8 AS x
    FROM (SELECT ('x' || encode(substring(sha256(convert_to(
                     coalesce((SELECT value FROM settings WHERE key = 'ab_salt'), 'twotower-ab') || ':' || p_user_id,
                     'UTF8')) FROM 1 FOR 8), 'hex'))::bit(64)::bigint AS b) z
)
SELECT s.version FROM s, h WHERE s.n = 1 OR h.x < s.upto OR s.from_end = 1
ORDER BY s.version LIMIT 1
$$;

-- Popular-and-recent videos (the cold-start list and the last fill), as serve_popular.sql.
CREATE OR REPLACE FUNCTION twotower.popular_videos(p_n integer)
RETURNS TABLE (video_id text, score double precision)
LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH ref AS (SELECT coalesce(max(created_at), now()) AS t FROM src_decisions),
pop AS (
    SELECT d.video_id, count(*) AS likes FROM src_decisions d, ref
    WHERE d.decision_type = 'like' AND d.created_at >= ref.t - interval '30 days' GROUP BY d.video_id
)
SELECT v.id, (coalesce(p.likes, 0) + 1)::float8
       * (1.0 + 1.0 / (1.0 + greatest(extract(epoch FROM (ref.t - coalesce(v.product_released_at, v.created_at)))
                                      / 86400.0, 0) / 30.0))
FROM src_videos v CROSS JOIN ref LEFT JOIN pop p ON p.video_id = v.id
ORDER BY 2 DESC, 1 LIMIT p_n
$$;

-- The deck's filter for one user (every path uses it): the videos kept out of their decks (cards
-- served within the impression TTL and not answered, unless p_exclude_impressions is false; the
-- cards of p_deck_id whenever given; muted videos) and the tags, performers and makers they muted.
CREATE OR REPLACE FUNCTION twotower.deck_hidden(p_user_id text, p_exclude_impressions boolean DEFAULT true,
                                                p_deck_id text DEFAULT NULL,
                                                OUT ids text[], OUT muted_ids text[], OUT tags text[],
                                                OUT performers text[], OUT makers text[], OUT n_mutes integer)
LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
SELECT ARRAY(SELECT i.video_id FROM impressions i
             WHERE i.user_id = p_user_id
               AND ((p_exclude_impressions AND i.last_served_at > now() - make_interval(secs =>
                        coalesce((SELECT value::float8 FROM settings WHERE key = 'impression_ttl_seconds'), 86400)))
                    OR i.deck_id = p_deck_id)
             UNION ALL SELECT m.value FROM user_mutes m WHERE m.user_id = p_user_id AND m.kind = 'video'),
       coalesce(array_agg(m.value) FILTER (WHERE m.kind = 'video'), '{}'),
       coalesce(array_agg(m.value) FILTER (WHERE m.kind = 'tag'), '{}'),
       coalesce(array_agg(m.value) FILTER (WHERE m.kind = 'performer'), '{}'),
       coalesce(array_agg(m.value) FILTER (WHERE m.kind = 'maker'), '{}'),
       count(*) FILTER (WHERE m.kind <> 'video')::integer
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

-- The diversity of one user's deck: the request's, else the user's own setting (user_settings),
-- else the installation's default (settings 'diversity', written by `db init` from
-- serving.diversity), else 0. The service's search statement (serve_recommend.sql) inlines the same.
CREATE OR REPLACE FUNCTION twotower.deck_diversity(p_user_id text, p_diversity double precision DEFAULT NULL)
RETURNS double precision LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
SELECT coalesce(p_diversity, (SELECT s.diversity FROM user_settings s WHERE s.user_id = p_user_id),
                (SELECT value::float8 FROM settings WHERE key = 'diversity'), 0)
$$;

-- How many candidates MMR re-ranks for a deck of p_limit (the plain ranking needs p_limit).
CREATE OR REPLACE FUNCTION twotower.mmr_pool(p_limit integer, p_diversity double precision)
RETURNS integer LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
SELECT CASE WHEN p_diversity > 0 THEN greatest(p_limit, least(4 * p_limit, 200)) ELSE p_limit END
$$;

-- The user's most recent nopes (at most 20), where the installation demotes what is close to
-- them (settings 'nope_weight', written by `db init` from serving.nope_weight, above 0); else {}.
CREATE OR REPLACE FUNCTION twotower.recent_nopes(p_user_id text)
RETURNS text[] LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
SELECT CASE WHEN coalesce((SELECT value::float8 FROM settings WHERE key = 'nope_weight'), 0) > 0 THEN
    ARRAY(SELECT d.video_id FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id)
          AND d.decision_type = 'nope' ORDER BY d.created_at DESC, d.video_id LIMIT 20)
    ELSE '{}'::text[] END
$$;

-- Maximal marginal relevance (Carbonell & Goldstein, SIGIR 1998) over the version's item vectors,
-- with the user's nopes as a second penalty: from candidates in ranking order, take p_k
-- greedily, each maximising
--     (1 - p_diversity) * relevance - p_diversity * (highest cosine to a card already taken)
--         - p_nope_weight * (highest cosine to one of p_nopes),
-- relevance being the score rescaled to 0..1 over the candidates, cosines floored at 0.
-- p_diversity 0 without nopes is the plain ranking (the first p_k); ties go to the better-ranked
-- candidate. Every path (the service's statement, twotower.recommend, so recommend_videos and
-- the Edge Function) calls this one.
DROP FUNCTION IF EXISTS twotower.mmr(text, text[], double precision[], integer, double precision);
CREATE OR REPLACE FUNCTION twotower.mmr(p_version text, p_ids text[], p_scores double precision[], p_k integer,
                                        p_diversity double precision, p_nopes text[] DEFAULT '{}',
                                        p_nope_weight double precision DEFAULT 0)
RETURNS TABLE (video_id text, score double precision, ord integer)
LANGUAGE plpgsql STABLE SET search_path = twotower, extensions, public, pg_catalog AS $fn$
#variable_conflict use_column
DECLARE
    n integer := coalesce(cardinality(p_ids), 0);
    d float8 := least(greatest(coalesce(p_diversity, 0), 0), 1);
    w float8 := CASE WHEN coalesce(cardinality(p_nopes), 0) > 0 THEN greatest(coalesce(p_nope_weight, 0), 0) ELSE 0 END;
    vecs vector[];
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
    IF n = 0 OR (d = 0 AND w = 0) THEN
        RETURN QUERY SELECT f.v, f.s, f.o::integer FROM unnest(p_ids, p_scores) WITH ORDINALITY AS f(v, s, o)
                     WHERE f.o <= p_k ORDER BY f.o;
        RETURN;
    END IF;
    SELECT array_agg(e.embedding ORDER BY f.o) INTO vecs
    FROM unnest(p_ids) WITH ORDINALITY AS f(v, o)
    LEFT JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = f.v;
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
    IF w > 0 THEN  -- each candidate's highest cosine to a recent nope, in one statement
        SELECT array_agg(coalesce(x.m, 0) ORDER BY x.o) INTO noped FROM (
            SELECT f.o, greatest(max(CASE WHEN 1 - (c.embedding <=> z.embedding) <> 'NaN'::float8
                                     THEN 1 - (c.embedding <=> z.embedding) END), 0) AS m
            FROM unnest(p_ids) WITH ORDINALITY AS f(v, o)
            LEFT JOIN video_embeddings c ON c.model_version = p_version AND c.video_id = f.v
            LEFT JOIN video_embeddings z ON z.model_version = p_version AND z.video_id = ANY (p_nopes)
            GROUP BY f.o) x;
    END IF;
    FOR step IN 1..least(p_k, n) LOOP
        best := NULL;
        FOR i IN 1..n LOOP
            CONTINUE WHEN taken[i];
            v := (1 - d) * rel[i] - d * near[i] - w * noped[i];
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
        CONTINUE WHEN d = 0 OR vecs[best] IS NULL;
        FOR i IN 1..n LOOP
            CONTINUE WHEN taken[i] OR vecs[i] IS NULL;
            sim := 1 - (vecs[i] <=> vecs[best]);
            IF sim > near[i] AND sim <> 'NaN'::float8 THEN  -- (NaN: a zero vector; PostgreSQL sorts it highest)
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

-- Recompute popular_cache when it is older than p_age (one caller at a time; the others serve the
-- list they have).
CREATE OR REPLACE FUNCTION twotower.refresh_popular(p_age interval)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = twotower, pg_catalog AS $fn$
BEGIN
    IF coalesce((SELECT value::timestamptz FROM settings WHERE key = 'popular_at'), '-infinity') > now() - p_age
       OR NOT pg_try_advisory_xact_lock(hashtext('twotower.popular')) THEN
        RETURN;
    END IF;
    DELETE FROM popular_cache;
    INSERT INTO popular_cache (video_id, score) SELECT * FROM popular_videos(500);
    DELETE FROM segment_popular;
    INSERT INTO segment_popular (segment, video_id, score) SELECT * FROM segment_videos(500);
    INSERT INTO settings (key, value) VALUES ('popular_at', now()::text)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
END
$fn$;

-- Recompute explore_cache when it is older than p_age (one caller at a time): among the newest
-- 2,000 videos, those with fewer than 20 answers, newest first, at most 500, with their counts.
CREATE OR REPLACE FUNCTION twotower.refresh_explore(p_age interval)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = twotower, pg_catalog AS $fn$
BEGIN
    IF coalesce((SELECT value::timestamptz FROM settings WHERE key = 'explore_at'), '-infinity') > now() - p_age
       OR NOT pg_try_advisory_xact_lock(hashtext('twotower.explore')) THEN
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
    INSERT INTO settings (key, value) VALUES ('explore_at', now()::text)
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
END
$fn$;

-- How many cards of a deck of p_limit go to exploration: the request's share, else the
-- installation's (settings 'explore_share', written by `db init` from serving.explore_share),
-- rounded half up.
CREATE OR REPLACE FUNCTION twotower.explore_count(p_limit integer, p_share double precision DEFAULT NULL)
RETURNS integer LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
SELECT least(p_limit, floor(p_limit * coalesce(p_share, (SELECT value::float8 FROM settings WHERE key = 'explore_share'), 0)
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
WITH c AS (
    SELECT x.video_id, x.likes, x.nopes, -(e.embedding <#> p_q) AS s
    FROM explore_cache x JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = x.video_id
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

-- Onboarding: a first vector for a user without likes, from what they picked at sign-up: the
-- vector of a user who liked the 20 most popular videos carrying a pick (tag, performer or
-- maker). Where the version keeps history rows (user_vector sql or sql+onnx) that is their sum,
-- as a real like history is summed; else the mean of those videos' item vectors (candidates
-- scored by how alike they are to them). NULL without picks, or without a matching video the
-- version knows. Every path calls this one function.
CREATE OR REPLACE FUNCTION twotower.preference_vector(p_version text, p_user_id text)
RETURNS vector LANGUAGE sql STABLE SET search_path = twotower, extensions, public, pg_catalog AS $$
WITH p AS (SELECT u.kind, u.value FROM user_preferences u WHERE u.user_id = p_user_id),
m AS (
    SELECT t.video_key FROM src_video_tags t JOIN p ON p.kind = 'tag' AND t.tag_name = p.value
    UNION SELECT f.video_key FROM src_video_performers f JOIN p ON p.kind = 'performer' AND f.performer_name = p.value
    UNION SELECT v.video_key FROM src_videos v JOIN p ON p.kind = 'maker' AND v.maker = p.value
),
top AS (
    SELECT v.id FROM m JOIN src_videos v ON v.video_key = m.video_key
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
WITH p AS (SELECT u.kind, u.value FROM user_preferences u WHERE u.user_id = p_user_id),
m AS (
    SELECT t.video_key FROM src_video_tags t JOIN p ON p.kind = 'tag' AND t.tag_name = p.value
    UNION SELECT f.video_key FROM src_video_performers f JOIN p ON p.kind = 'performer' AND f.performer_name = p.value
    UNION SELECT v.video_key FROM src_videos v JOIN p ON p.kind = 'maker' AND v.maker = p.value
),
c AS (
    SELECT v.id, -(e.embedding <#> p_q) AS s FROM m JOIN src_videos v ON v.video_key = m.video_key
    JOIN video_embeddings e ON e.model_version = p_version AND e.video_id = v.id
    WHERE p_q IS NOT NULL AND NOT (v.id = ANY (p_hidden))
      AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.video_key = m.video_key)
      AND (p_n_mutes = 0 OR NOT twotower.is_muted(v.id, p_tags, p_performers, p_makers))
    ORDER BY 2 DESC, 1 LIMIT p_n
)
SELECT c.id, c.s, row_number() OVER (ORDER BY c.s DESC, c.id) FROM c ORDER BY 3
$$;

-- Reasons, as the service names them: up to 3 tags, then up to 2 performers, each in name order,
-- that a video shares with the user's 200 most recent likes.
CREATE OR REPLACE FUNCTION twotower.reasons_for(p_user_id text, p_video_ids text[])
RETURNS TABLE (video_id text, reasons text[])
LANGUAGE sql STABLE SET search_path = twotower, pg_catalog AS $$
WITH liked AS (
    SELECT d.video_id, d.video_key FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.decision_type = 'like'
    ORDER BY d.created_at DESC LIMIT 200
), lt AS (SELECT DISTINCT t.tag_name FROM liked l JOIN src_video_tags t ON t.video_key = l.video_key),
lp AS (SELECT DISTINCT p.performer_name FROM liked l JOIN src_video_performers p ON p.video_key = l.video_key)
SELECT c.id,
       ARRAY(SELECT 'tag:' || t.tag_name FROM src_video_tags t WHERE t.video_key = twotower.video_key(c.id)
             AND t.tag_name IN (SELECT tag_name FROM lt) ORDER BY t.tag_name COLLATE "C" LIMIT 3)
       || ARRAY(SELECT 'performer:' || p.performer_name FROM src_video_performers p WHERE p.video_key = twotower.video_key(c.id)
                AND p.performer_name IN (SELECT performer_name FROM lp) ORDER BY p.performer_name COLLATE "C" LIMIT 2)
FROM unnest(p_video_ids) AS c(id)
$$;

-- Each version's filtered HNSW search as a function of its own, with the version and dimension
-- written in as literals (its partial index over embedding::vector(D) must be named so) and the
-- statement static, so PL/pgSQL plans it once per session instead of once per call as EXECUTE
-- would (about half a millisecond of planning at 50k videos). `embed` creates it with the index;
-- every `db init` recreates it for each embedded version, so a change here reaches old installs.
-- The ORDER BY is the distance expression itself, never an alias (supabase#18046).
CREATE OR REPLACE FUNCTION twotower.search_function_name(p_version text)
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
SELECT 'search_' || substr(encode(sha256(convert_to(p_version, 'UTF8')), 'hex'), 1, 16)
$$;

-- The search functions' argument types (before the deck filter: vector, text, integer).
CREATE OR REPLACE FUNCTION twotower.search_function_args()
RETURNS text LANGUAGE sql IMMUTABLE SET search_path = pg_catalog AS $$
SELECT 'vector, text, integer, text[], text[], text[], text[], integer'
$$;

DROP FUNCTION IF EXISTS twotower.ensure_search_function(text);
CREATE OR REPLACE FUNCTION twotower.ensure_search_function(p_version text, p_dim integer)
RETURNS text LANGUAGE plpgsql VOLATILE SET search_path = twotower, extensions, public, pg_catalog AS $fn$
DECLARE
    fname text := search_function_name(p_version);
    dim integer := p_dim;
BEGIN
    IF dim IS NULL OR dim < 1 THEN
        RAISE EXCEPTION 'ensure_search_function(%): give the embedding dimension', p_version USING ERRCODE = '22023';
    END IF;
    IF (SELECT string_to_array(extversion, '.')::int[] < ARRAY[0, 8, 0] FROM pg_extension WHERE extname = 'vector') THEN
        PERFORM drop_search_function(p_version);  -- no iterative scans: recommend over-fetches instead
        RETURN NULL;
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS twotower.%I(vector, text, integer)', fname);  -- before the deck filter
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION twotower.%1$I(p_q vector, p_user_id text, p_k integer, p_hidden text[],
                                                 p_tags text[], p_performers text[], p_makers text[], p_n_mutes integer)
        RETURNS TABLE (video_id text, dist double precision)
        LANGUAGE plpgsql STABLE SET search_path = twotower, extensions, public, pg_catalog
        SET plan_cache_mode = force_generic_plan AS $body$
        #variable_conflict use_column
        BEGIN
            RETURN QUERY
            SELECT e.video_id, (e.embedding::vector(%2$s) <#> p_q::vector(%2$s))::float8
            FROM video_embeddings e
            WHERE e.model_version = %3$L
              AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id)
                              AND d.video_key = twotower.video_key(e.video_id))
              AND NOT (e.video_id = ANY (p_hidden))
              AND (p_n_mutes = 0 OR NOT twotower.is_muted(e.video_id, p_tags, p_performers, p_makers))
            ORDER BY e.embedding::vector(%2$s) <#> p_q::vector(%2$s)
            LIMIT p_k;
        END
        $body$$f$, fname, dim, p_version);
    EXECUTE format('REVOKE ALL ON FUNCTION twotower.%I(%s) FROM PUBLIC', fname, search_function_args());
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        EXECUTE format('GRANT EXECUTE ON FUNCTION twotower.%I(%s) TO service_role', fname, search_function_args());
    END IF;
    RETURN fname;
END
$fn$;

CREATE OR REPLACE FUNCTION twotower.drop_search_function(p_version text)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = twotower, extensions, public, pg_catalog AS $fn$
BEGIN
    EXECUTE format('DROP FUNCTION IF EXISTS twotower.%I(vector, text, integer)', search_function_name(p_version));
    EXECUTE format('DROP FUNCTION IF EXISTS twotower.%I(%s)', search_function_name(p_version), search_function_args());
END
$fn$;

DO $$
DECLARE v text; d integer;
BEGIN
    FOR v, d IN SELECT m.version, m.embedding_dim FROM twotower.embedding_model_versions m
             WHERE EXISTS (SELECT 1 FROM twotower.video_embeddings e WHERE e.model_version = m.version) LOOP
        PERFORM twotower.ensure_search_function(v, d);
    END LOOP;
END $$;

-- One user's list: the arm, the user vector (summed in SQL, or stored), the filtered HNSW search
-- (iterative scan; over-fetching before pgvector 0.8), the exact and the popular fills, the
-- cold-start list, reasons, and the served list in recommendation_log and impressions. The deck
-- filter (deck_hidden) keeps out decided videos, cards served within the impression TTL (unless
-- p_exclude_impressions is false), the cards of p_deck_id and everything the user muted; when
-- nothing else is left the oldest impressions come back. Dynamic SQL because each version has its
-- own partial HNSW index over embedding::vector(D), which the statement must name with the
-- version and dimension as literals; the ORDER BY is the distance expression itself, never an
-- alias (supabase#18046: an alias defeats the index). A caller that built the user vector itself
-- (the Edge Function: user_content.onnx or user_tower.onnx) passes it with its version; the rest
-- of the path is the same.
DROP FUNCTION IF EXISTS twotower.recommend(text, integer);  -- before p_version, p_vector
DROP FUNCTION IF EXISTS twotower.recommend(text, integer, text, vector);  -- before the deck filter
DROP FUNCTION IF EXISTS twotower.recommend(text, integer, text, vector, boolean, text);  -- before p_diversity
DROP FUNCTION IF EXISTS twotower.recommend(text, integer, text, vector, boolean, text, double precision);  -- before exploration
CREATE OR REPLACE FUNCTION twotower.recommend(p_user_id text, p_limit integer, p_version text DEFAULT NULL,
                                              p_vector vector DEFAULT NULL, p_exclude_impressions boolean DEFAULT true,
                                              p_deck_id text DEFAULT NULL, p_diversity double precision DEFAULT NULL,
                                              p_explore_share double precision DEFAULT NULL)
RETURNS TABLE (video_id text, score double precision, model_version text, source text, reasons text[])
LANGUAGE plpgsql VOLATILE SET search_path = twotower, extensions, public, pg_catalog
SET plan_cache_mode = force_generic_plan AS $fn$
#variable_conflict use_column
DECLARE
    m record;
    hid record;
    q vector;
    src text := 'two_tower';
    ids text[] := '{}';
    scores float8[] := '{}';
    n integer;
    fname text;
    search text;
    div float8;
    nopes text[];  -- recent nopes, where the installation demotes what is close to them
    nope_w float8;
    pool integer;
    xn integer;
    pv vector;
    seg text;  -- the cold-start user's segment, where it has its own popular list
    xids text[] := '{}';
    xscores float8[] := '{}';
    xpos integer[] := '{}';  -- the deck positions (ords) dealt to exploration
    merged_ids text[];
    merged_scores float8[];
    total integer;
    ri integer;
    xi integer;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 100 THEN
        RAISE EXCEPTION 'p_limit must be between 1 and 100, not %', p_limit USING ERRCODE = '22023';
    END IF;
    IF p_diversity IS NOT NULL AND NOT (p_diversity >= 0 AND p_diversity <= 1) THEN
        RAISE EXCEPTION 'p_diversity must be between 0 and 1, not %', p_diversity USING ERRCODE = '22023';
    END IF;
    IF p_explore_share IS NOT NULL AND NOT (p_explore_share >= 0 AND p_explore_share <= 1) THEN
        RAISE EXCEPTION 'p_explore_share must be between 0 and 1, not %', p_explore_share USING ERRCODE = '22023';
    END IF;
    -- the deck's settings in one statement (deck_diversity, nope_weight, explore_count, inline:
    -- a function call pays for its SET)
    SELECT coalesce(p_diversity, (SELECT us.diversity FROM user_settings us WHERE us.user_id = p_user_id),
                    max(st.value::float8) FILTER (WHERE st.key = 'diversity'), 0),
           coalesce(max(st.value::float8) FILTER (WHERE st.key = 'nope_weight'), 0),
           least(p_limit, floor(p_limit * coalesce(p_explore_share, max(st.value::float8) FILTER (WHERE st.key = 'explore_share'), 0)
                                + 0.5))::integer
    INTO div, nope_w, xn
    FROM settings st WHERE st.key IN ('diversity', 'nope_weight', 'explore_share');
    nopes := CASE WHEN nope_w > 0 THEN recent_nopes(p_user_id) ELSE '{}'::text[] END;
    pool := CASE WHEN div > 0 OR cardinality(nopes) > 0 THEN greatest(p_limit, least(4 * p_limit, 200)) ELSE p_limit END;
    IF coalesce((SELECT value::timestamptz FROM settings WHERE key = 'popular_at'), '-infinity')
       <= now() - interval '5 minutes' THEN
        PERFORM refresh_popular(interval '5 minutes');
    END IF;
    SELECT * INTO hid FROM deck_hidden(p_user_id, coalesce(p_exclude_impressions, true), p_deck_id);
    IF p_vector IS NOT NULL THEN  -- the caller's own vector for its version
        SELECT e.version, e.embedding_dim, e.user_vector, e.max_history INTO m
        FROM embedding_model_versions e WHERE e.version = p_version;
        IF m.version IS NULL THEN
            RAISE EXCEPTION 'model version % is not registered', p_version USING ERRCODE = '22023';
        END IF;
        IF vector_dims(p_vector) <> m.embedding_dim THEN
            RAISE EXCEPTION 'the vector has % dimensions; version % has %', vector_dims(p_vector), p_version,
                m.embedding_dim USING ERRCODE = '22023';
        END IF;
        q := p_vector;
    ELSE
    -- The arm: with one active version no hash is needed (as in the service); else ab_version.
    SELECT e.version, e.embedding_dim, e.user_vector, e.max_history, count(*) OVER () AS arms INTO m
    FROM embedding_model_versions e WHERE e.is_active AND e.traffic_share > 0 LIMIT 1;
    IF m.arms > 1 THEN
        SELECT e.version, e.embedding_dim, e.user_vector, e.max_history INTO m
        FROM embedding_model_versions e WHERE e.version = ab_version(p_user_id);
    END IF;
    IF m.version IS NOT NULL AND EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id)) THEN
        IF m.user_vector = 'sql' THEN  -- as sql_user_vector, inline (a function call pays for its SET)
            SELECT sum(h.embedding) INTO q
            FROM (SELECT d.video_id FROM src_decisions d
                  WHERE d.user_key = twotower.user_key(p_user_id) AND d.decision_type = 'like' AND d.created_at < now()
                  ORDER BY d.created_at DESC, d.video_id LIMIT m.max_history) l
            JOIN history_embeddings h ON h.model_version = m.version AND h.video_id = l.video_id;
        ELSE
            src := 'two_tower_stored';
            SELECT e.embedding INTO q FROM user_embeddings e WHERE e.model_version = m.version AND e.user_id = p_user_id;
        END IF;
    END IF;
    END IF;
    IF vector_norm(q) = 0 THEN  -- only nopes, or likes of videos the model does not know
        q := NULL;
    END IF;
    IF m.version IS NOT NULL AND EXISTS (SELECT 1 FROM user_preferences u WHERE u.user_id = p_user_id)
       AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.decision_type = 'like') THEN
        -- onboarding: until their first like, what they picked at sign-up
        pv := preference_vector(m.version, p_user_id);
        IF pv IS NOT NULL THEN
            q := pv;
            src := 'onboarding';
        END IF;
    END IF;
    IF src = 'onboarding' THEN  -- the picks' videos, ranked by the preference vector
        SELECT coalesce(array_agg(o.video_id ORDER BY o.ord), '{}'), coalesce(array_agg(o.score ORDER BY o.ord), '{}')
        INTO ids, scores
        FROM onboarding_deck(m.version, q, p_user_id, p_limit, hid.ids, hid.tags, hid.performers, hid.makers, hid.n_mutes) o;
        IF cardinality(ids) = 0 THEN  -- every video of the picks decided or kept out
            q := NULL;
        END IF;
    END IF;
    IF q IS NULL THEN  -- no decisions (or no likes, or no vector yet): popular and recent
        src := 'cold_start';  -- of the user's segment first, where it has a list
        seg := segment_of(p_user_id);
        IF seg IS NOT NULL AND NOT EXISTS (SELECT 1 FROM segment_popular sp WHERE sp.segment = seg) THEN
            seg := NULL;
        END IF;
    ELSIF src = 'onboarding' THEN
        NULL;  -- dealt above; the popular fill tops it up
    ELSE
    search := format($q$
        SELECT coalesce(array_agg(c.video_id ORDER BY c.dist), '{}'), coalesce(array_agg(-c.dist ORDER BY c.dist), '{}')
        FROM (SELECT e.video_id, e.embedding::vector(%1$s) <#> $1::vector(%1$s) AS dist
              FROM video_embeddings e
              WHERE e.model_version = %2$L
                AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key($2) AND d.video_key = twotower.video_key(e.video_id))
                AND NOT (e.video_id = ANY ($4))
                AND ($8 = 0 OR NOT twotower.is_muted(e.video_id, $5, $6, $7))
              ORDER BY %3$s
              LIMIT $3) c$q$, m.embedding_dim, m.version, '%s');
    -- The version's own search function (ensure_search_function; its name as search_function_name
    -- computes it, inline here), made only where pgvector has iterative scans.
    fname := 'search_' || substr(encode(sha256(convert_to(m.version, 'UTF8')), 'hex'), 1, 16);
    IF to_regprocedure('twotower.' || fname || '(vector, text, integer, text[], text[], text[], text[], integer)') IS NOT NULL THEN
        PERFORM set_config('hnsw.ef_search', greatest(40, pool)::text, true),
                set_config('hnsw.iterative_scan', 'relaxed_order', true),
                set_config('hnsw.max_scan_tuples', '20000', true);
        EXECUTE format('SELECT coalesce(array_agg(c.video_id ORDER BY c.dist), ''{}''), '
                       'coalesce(array_agg(-c.dist ORDER BY c.dist), ''{}'') FROM twotower.%I($1, $2, $3, $4, $5, $6, $7, $8) c', fname)
            INTO ids, scores USING q, p_user_id, pool, hid.ids, hid.tags, hid.performers, hid.makers, hid.n_mutes;
    ELSIF (SELECT string_to_array(extversion, '.')::int[] >= ARRAY[0, 8, 0] FROM pg_extension WHERE extname = 'vector') THEN
        -- embedded before search functions existed and `db init` not rerun since: planned per call
        PERFORM set_config('hnsw.ef_search', greatest(40, pool)::text, true),
                set_config('hnsw.iterative_scan', 'relaxed_order', true),
                set_config('hnsw.max_scan_tuples', '20000', true);
        EXECUTE format(search, format('e.embedding::vector(%1$s) <#> $1::vector(%1$s)', m.embedding_dim))
            INTO ids, scores USING q, p_user_id, pool, hid.ids, hid.tags, hid.performers, hid.makers, hid.n_mutes;
    ELSE
        n := pool;
        LOOP  -- pgvector < 0.8: over-fetch, fourfold, up to the largest ef_search
            n := least(1000, greatest(n * 4, 40));
            PERFORM set_config('hnsw.ef_search', n::text, true);
            EXECUTE format(search, format('e.embedding::vector(%1$s) <#> $1::vector(%1$s)', m.embedding_dim))
                INTO ids, scores USING q, p_user_id, n, hid.ids, hid.tags, hid.performers, hid.makers, hid.n_mutes;
            EXIT WHEN cardinality(ids) >= pool OR n >= 1000;
        END LOOP;
        ids := ids[1:pool];
        scores := scores[1:pool];
    END IF;
    IF cardinality(ids) < p_limit THEN  -- still short: an exact scan the index cannot serve
        EXECUTE format(search, format('(e.embedding::vector(%1$s) <#> $1::vector(%1$s)) + 0', m.embedding_dim))
            INTO ids, scores USING q, p_user_id, pool, hid.ids, hid.tags, hid.performers, hid.makers, hid.n_mutes;
    END IF;
    IF div > 0 OR cardinality(nopes) > 0 THEN  -- MMR over the pool: each card unlike those above it and the nopes
        SELECT coalesce(array_agg(r.video_id ORDER BY r.ord), '{}'), coalesce(array_agg(r.score ORDER BY r.ord), '{}')
        INTO ids, scores
        FROM mmr(m.version, ids, scores, p_limit, div, nopes, nope_w) r;
    END IF;
    IF xn > 0 THEN  -- exploration: Thompson-sampled new videos at evenly spread positions
        IF coalesce((SELECT value::timestamptz FROM settings WHERE key = 'explore_at'), '-infinity')
           <= now() - interval '1 minute' THEN
            PERFORM refresh_explore(interval '1 minute');
        END IF;
        SELECT coalesce(array_agg(x.video_id ORDER BY x.o), '{}'), coalesce(array_agg(x.score ORDER BY x.o), '{}')
        INTO xids, xscores
        FROM explore_pick(m.version, q, p_user_id, xn, hid.ids, hid.tags, hid.performers, hid.makers, hid.n_mutes, ids)
             WITH ORDINALITY AS x(video_id, score, o);
        IF cardinality(xids) > 0 THEN  -- as serve/recommend.py deal()
            total := least(cardinality(ids), p_limit - cardinality(xids)) + cardinality(xids);
            merged_ids := '{}';
            merged_scores := '{}';
            ri := 1;
            xi := 1;
            FOR pos IN 1..total LOOP
                IF xi <= cardinality(xids) AND pos = floor(xi * (total + 1)::float8 / (cardinality(xids) + 1)) THEN
                    merged_ids := merged_ids || xids[xi];
                    merged_scores := merged_scores || xscores[xi];
                    xpos := xpos || pos;
                    xi := xi + 1;
                ELSE
                    merged_ids := merged_ids || ids[ri];
                    merged_scores := merged_scores || scores[ri];
                    ri := ri + 1;
                END IF;
            END LOOP;
            ids := merged_ids;
            scores := merged_scores;
        END IF;
    END IF;
    END IF;
    -- Reasons as reasons_for names them (inline: a function call pays for its SET), set-based: one
    -- join of the served videos' tags (performers) with those of the 200 latest likes, instead of
    -- a correlated subquery per video.
    RETURN QUERY
    WITH liked AS (
        SELECT d.video_key FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.decision_type = 'like'
        ORDER BY d.created_at DESC LIMIT 200
    ), found AS (
        SELECT f.video_id, f.score, f.ord FROM unnest(ids, scores) WITH ORDINALITY AS f(video_id, score, ord)
    ), pop AS (  -- the segment's list first (a cold start in a segment that has one), then the global
        SELECT sp.video_id, sp.score, 0 AS tier FROM segment_popular sp WHERE sp.segment = seg
        UNION ALL
        SELECT pc.video_id, pc.score, 1 FROM popular_cache pc
        WHERE seg IS NULL OR NOT EXISTS (SELECT 1 FROM segment_popular sp WHERE sp.segment = seg AND sp.video_id = pc.video_id)
    ), fill AS (  -- the filter left it short (or a cold start): popular videos the deck allows
        SELECT pv.video_id, pv.score,
               cardinality(ids) + row_number() OVER (ORDER BY pv.tier, pv.score DESC, pv.video_id) AS ord
        FROM pop pv
        WHERE cardinality(ids) < p_limit AND NOT (pv.video_id = ANY (ids)) AND NOT (pv.video_id = ANY (hid.ids))
          AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.video_key = twotower.video_key(pv.video_id))
          AND (hid.n_mutes = 0 OR NOT twotower.is_muted(pv.video_id, hid.tags, hid.performers, hid.makers))
        ORDER BY pv.tier, pv.score DESC, pv.video_id LIMIT greatest(p_limit - cardinality(ids), 0)
    ), fresh AS (
        SELECT * FROM found UNION ALL SELECT * FROM fill
    ), seen AS (  -- nothing else left: the oldest impressions (never a card of this deck)
        SELECT i.video_id, 0::float8 AS score,
               (SELECT count(*) FROM fresh) + row_number() OVER (ORDER BY i.last_served_at, i.video_id) AS ord
        FROM impressions i
        WHERE i.user_id = p_user_id AND (SELECT count(*) FROM fresh) < p_limit
          AND (p_deck_id IS NULL OR i.deck_id IS DISTINCT FROM p_deck_id) AND NOT (i.video_id = ANY (hid.muted_ids))
          AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.video_id = i.video_id)
          AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.video_key = twotower.video_key(i.video_id))
          AND (hid.n_mutes = 0 OR NOT twotower.is_muted(i.video_id, hid.tags, hid.performers, hid.makers))
        ORDER BY i.last_served_at, i.video_id LIMIT p_limit
    ), served AS (
        SELECT * FROM fresh UNION ALL SELECT * FROM seen WHERE seen.ord <= p_limit
    ), tag_reasons AS (
        SELECT f.ord, (array_agg('tag:' || t.tag_name ORDER BY t.tag_name COLLATE "C"))[1:3] AS r
        FROM found f JOIN src_video_tags t ON t.video_key = twotower.video_key(f.video_id)
        WHERE t.tag_name IN (SELECT lt.tag_name FROM liked l JOIN src_video_tags lt ON lt.video_key = l.video_key)
        GROUP BY f.ord
    ), performer_reasons AS (
        SELECT f.ord, (array_agg('performer:' || p.performer_name ORDER BY p.performer_name COLLATE "C"))[1:2] AS r
        FROM found f JOIN src_video_performers p ON p.video_key = twotower.video_key(f.video_id)
        WHERE p.performer_name IN (SELECT lp.performer_name FROM liked l JOIN src_video_performers lp ON lp.video_key = l.video_key)
        GROUP BY f.ord
    ), logged AS (
        INSERT INTO recommendation_log (user_id, model_version, source, video_ids)
        SELECT p_user_id, m.version, src, coalesce(array_agg(s.video_id ORDER BY s.ord), '{}') FROM served s
    ), remembered AS (
        INSERT INTO impressions AS i (user_id, video_id, first_served_at, last_served_at, deck_id)
        SELECT p_user_id, s.video_id, now(), now(), p_deck_id FROM served s
        ON CONFLICT (user_id, video_id) DO UPDATE
        SET last_served_at = greatest(i.last_served_at, excluded.last_served_at), times_served = i.times_served + 1,
            deck_id = coalesce(excluded.deck_id, i.deck_id)
    )
    SELECT s.video_id, s.score, CASE WHEN src = 'cold_start' THEN NULL ELSE m.version END,
           CASE WHEN s.ord = ANY (xpos) THEN 'explore' ELSE src END,
           CASE WHEN s.ord > (SELECT count(*) FROM fresh) THEN ARRAY['seen before']
                WHEN src = 'cold_start' AND seg IS NOT NULL
                     AND EXISTS (SELECT 1 FROM segment_popular sp WHERE sp.segment = seg AND sp.video_id = s.video_id)
                     THEN ARRAY['popular in your age group and region']
                WHEN src = 'cold_start' THEN ARRAY['popular and recent']
                WHEN s.ord > cardinality(ids) THEN ARRAY['popular']
                WHEN s.ord = ANY (xpos) THEN ARRAY['new video']
                WHEN src = 'onboarding' THEN ARRAY['your picks']
                ELSE coalesce(tr.r, '{}') || coalesce(pr.r, '{}') END
    FROM served s LEFT JOIN tag_reasons tr ON tr.ord = s.ord LEFT JOIN performer_reasons pr ON pr.ord = s.ord
    ORDER BY s.ord;
END
$fn$;

-- The public wrapper: the caller is auth.uid() (as text: ids are compared as text); a signed-in
-- user may ask only for itself; the service role (or the owner) may name any p_user_id. `anon`
-- may not execute it at all (its EXECUTE is revoked: PostgreSQL's permission denied).
DROP FUNCTION IF EXISTS public.recommend_videos(integer, text);  -- before the deck arguments
DROP FUNCTION IF EXISTS public.recommend_videos(integer, text, text, boolean);  -- before p_diversity
DROP FUNCTION IF EXISTS public.recommend_videos(integer, text, text, boolean, double precision);  -- before exploration
CREATE OR REPLACE FUNCTION public.recommend_videos(p_limit integer DEFAULT 20, p_user_id text DEFAULT NULL,
                                                   p_deck_id text DEFAULT NULL, p_exclude_impressions boolean DEFAULT true,
                                                   p_diversity double precision DEFAULT NULL,
                                                   p_explore_share double precision DEFAULT NULL)
RETURNS TABLE (video_id text, score double precision, model_version text, source text, reasons text[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twotower, extensions, public, pg_catalog AS $fn$
#variable_conflict use_column
DECLARE
    caller text := current_setting('role');
    sub text := auth.jwt() ->> 'sub';
BEGIN
    IF caller IN ('authenticated', 'anon') THEN
        IF sub IS NULL THEN
            RAISE EXCEPTION 'no signed-in user: call recommend_videos with a user''s access token'
                USING ERRCODE = '42501';
        END IF;
        IF p_user_id IS NOT NULL AND p_user_id <> sub THEN
            RAISE EXCEPTION 'a user may only ask for their own recommendations' USING ERRCODE = '42501';
        END IF;
        RETURN QUERY SELECT * FROM twotower.recommend(sub, p_limit, NULL, NULL, p_exclude_impressions, p_deck_id,
                                                       p_diversity, p_explore_share);
    ELSE
        IF coalesce(p_user_id, sub) IS NULL THEN
            RAISE EXCEPTION 'pass p_user_id: the caller (%) names no user', caller USING ERRCODE = '22023';
        END IF;
        RETURN QUERY SELECT * FROM twotower.recommend(coalesce(p_user_id, sub), p_limit, NULL, NULL,
                                                       p_exclude_impressions, p_deck_id, p_diversity, p_explore_share);
    END IF;
END
$fn$;

-- "Less of this" from supabase-js: supabase.rpc('twotower_mute', { p_kind: 'tag', p_value: 'horror' })
-- mutes for the signed-in user (p_mute false unmutes); the service role names p_user_id. Returns
-- the user's mutes after the change. `anon` may not execute it.
CREATE OR REPLACE FUNCTION public.twotower_mute(p_kind text, p_value text, p_mute boolean DEFAULT true,
                                                p_user_id text DEFAULT NULL)
RETURNS TABLE (kind text, value text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twotower, public, pg_catalog AS $fn$
#variable_conflict use_column
DECLARE
    caller text := current_setting('role');
    sub text := auth.jwt() ->> 'sub';
    who text;
BEGIN
    IF caller IN ('authenticated', 'anon') THEN
        IF sub IS NULL THEN
            RAISE EXCEPTION 'no signed-in user: call twotower_mute with a user''s access token' USING ERRCODE = '42501';
        END IF;
        IF p_user_id IS NOT NULL AND p_user_id <> sub THEN
            RAISE EXCEPTION 'a user may only change their own mutes' USING ERRCODE = '42501';
        END IF;
        who := sub;
    ELSE
        who := coalesce(p_user_id, sub);
        IF who IS NULL THEN
            RAISE EXCEPTION 'pass p_user_id: the caller (%) names no user', caller USING ERRCODE = '22023';
        END IF;
    END IF;
    IF p_kind IS NULL OR p_kind NOT IN ('tag', 'performer', 'maker', 'video') THEN
        RAISE EXCEPTION 'p_kind must be tag, performer, maker or video, not %', p_kind USING ERRCODE = '22023';
    END IF;
    IF p_value IS NULL OR btrim(p_value) = '' OR length(p_value) > 128 THEN
        RAISE EXCEPTION 'p_value must be a non-blank name of at most 128 characters' USING ERRCODE = '22023';
    END IF;
    IF coalesce(p_mute, true) THEN
        INSERT INTO user_mutes (user_id, kind, value) VALUES (who, p_kind, p_value) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM user_mutes m WHERE m.user_id = who AND m.kind = p_kind AND m.value = p_value;
    END IF;
    RETURN QUERY SELECT m.kind, m.value FROM user_mutes m WHERE m.user_id = who ORDER BY m.kind, m.value;
END
$fn$;

-- The user's own diversity setting from supabase-js:
-- supabase.rpc('twotower_set_diversity', { p_diversity: 0.3 }) for the signed-in user (null
-- clears it: the installation's default applies); the service role names p_user_id. Returns the
-- setting after the change. `anon` may not execute it.
CREATE OR REPLACE FUNCTION public.twotower_set_diversity(p_diversity double precision, p_user_id text DEFAULT NULL)
RETURNS double precision
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twotower, public, pg_catalog AS $fn$
DECLARE
    caller text := current_setting('role');
    sub text := auth.jwt() ->> 'sub';
    who text;
BEGIN
    IF caller IN ('authenticated', 'anon') THEN
        IF sub IS NULL THEN
            RAISE EXCEPTION 'no signed-in user: call twotower_set_diversity with a user''s access token'
                USING ERRCODE = '42501';
        END IF;
        IF p_user_id IS NOT NULL AND p_user_id <> sub THEN
            RAISE EXCEPTION 'a user may only change their own settings' USING ERRCODE = '42501';
        END IF;
        who := sub;
    ELSE
        who := coalesce(p_user_id, sub);
        IF who IS NULL THEN
            RAISE EXCEPTION 'pass p_user_id: the caller (%) names no user', caller USING ERRCODE = '22023';
        END IF;
    END IF;
    IF p_diversity IS NOT NULL AND NOT (p_diversity >= 0 AND p_diversity <= 1) THEN
        RAISE EXCEPTION 'p_diversity must be between 0 and 1 (or null to clear it), not %', p_diversity
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO user_settings AS s (user_id, diversity, updated_at) VALUES (who, p_diversity, now())
    ON CONFLICT (user_id) DO UPDATE SET diversity = excluded.diversity, updated_at = excluded.updated_at;
    RETURN p_diversity;
END
$fn$;

-- Onboarding from supabase-js: supabase.rpc('twotower_set_preferences', { p_tags: ['comedy'] })
-- replaces the signed-in user's picks (tags, performers, makers; empty arrays clear them); the
-- service role names p_user_id. Returns the picks after the change. `anon` may not execute it.
CREATE OR REPLACE FUNCTION public.twotower_set_preferences(p_tags text[] DEFAULT '{}', p_performers text[] DEFAULT '{}',
                                                           p_makers text[] DEFAULT '{}', p_user_id text DEFAULT NULL)
RETURNS TABLE (kind text, value text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = twotower, public, pg_catalog AS $fn$
#variable_conflict use_column
DECLARE
    caller text := current_setting('role');
    sub text := auth.jwt() ->> 'sub';
    who text;
BEGIN
    IF caller IN ('authenticated', 'anon') THEN
        IF sub IS NULL THEN
            RAISE EXCEPTION 'no signed-in user: call twotower_set_preferences with a user''s access token'
                USING ERRCODE = '42501';
        END IF;
        IF p_user_id IS NOT NULL AND p_user_id <> sub THEN
            RAISE EXCEPTION 'a user may only change their own preferences' USING ERRCODE = '42501';
        END IF;
        who := sub;
    ELSE
        who := coalesce(p_user_id, sub);
        IF who IS NULL THEN
            RAISE EXCEPTION 'pass p_user_id: the caller (%) names no user', caller USING ERRCODE = '22023';
        END IF;
    END IF;
    IF coalesce(cardinality(p_tags), 0) > 50 OR coalesce(cardinality(p_performers), 0) > 50
       OR coalesce(cardinality(p_makers), 0) > 50 THEN
        RAISE EXCEPTION 'at most 50 tags, 50 performers and 50 makers' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(coalesce(p_tags, '{}') || coalesce(p_performers, '{}') || coalesce(p_makers, '{}')) x
               WHERE x IS NULL OR btrim(x) = '' OR length(x) > 128) THEN
        RAISE EXCEPTION 'each pick must be a non-blank name of at most 128 characters' USING ERRCODE = '22023';
    END IF;
    DELETE FROM user_preferences u WHERE u.user_id = who;
    INSERT INTO user_preferences (user_id, kind, value)
    SELECT DISTINCT who, x.kind, x.value FROM (
        SELECT 'tag' AS kind, unnest(coalesce(p_tags, '{}')) AS value
        UNION ALL SELECT 'performer', unnest(coalesce(p_performers, '{}'))
        UNION ALL SELECT 'maker', unnest(coalesce(p_makers, '{}'))) x;
    RETURN QUERY SELECT u.kind, u.value FROM user_preferences u WHERE u.user_id = who ORDER BY u.kind, u.value;
END
$fn$;

-- The public wrappers: nobody but authenticated (for itself) and service_role may execute them.
DO $$
DECLARE f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY['public.recommend_videos(integer, text, text, boolean, double precision, double precision)',
                             'public.twotower_set_diversity(double precision, text)',
                             'public.twotower_set_preferences(text[], text[], text[], text)',
                             'public.twotower_mute(text, text, boolean, text)']::regprocedure[] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM anon', f);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO authenticated', f);
        END IF;
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO service_role', f);
        END IF;
    END LOOP;
END $$;
