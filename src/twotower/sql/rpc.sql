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

-- Recompute popular_cache when it is older than p_age (one caller at a time; the others serve the
-- list they have).
CREATE OR REPLACE FUNCTION twotower.refresh_popular(p_age interval)
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = twotower, pg_catalog AS $fn$
BEGIN
    IF NOT claim_refresh('popular', p_age) THEN  -- (deck.sql)
        RETURN;
    END IF;
    DELETE FROM popular_cache;
    INSERT INTO popular_cache (video_id, score) SELECT * FROM popular_videos(500);
    DELETE FROM segment_popular;
    INSERT INTO segment_popular (segment, video_id, score) SELECT * FROM segment_videos(500);
END
$fn$;

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
    neg_ids text[] := '{}';  -- negatives: what the re-rank demotes the neighbours of (nopes, muted videos)
    neg_w float8[] := '{}';
    nope_w float8;
    mute_w float8;
    disc float8;  -- impression discount, where the user has a stale unanswered card
    pool integer;
    xn integer;
    pv vector;
    seg text;  -- the cold-start user's segment, where it has its own popular list
    xids text[] := '{}';
    xscores float8[] := '{}';
    xpos integer[] := '{}';  -- the deck positions (ords) dealt to exploration (or to the picks)
    xsrc text := 'explore';  -- whose cards xids are: exploration's, or the fading onboarding's
    fade float8;  -- onboarding_fade_likes
    onb integer := 0;  -- the picks' cards in this deck: ceil(limit * (1 - likes / fade)), with picks
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
    -- the deck's settings in one statement (diversity, impression discount, explore_count
    -- inline: a function call pays for its SET)
    SELECT coalesce(p_diversity, (SELECT us.diversity FROM user_settings us WHERE us.user_id = p_user_id),
                    max(st.value::float8) FILTER (WHERE st.key = 'diversity'), 0),
           coalesce(max(st.value::float8) FILTER (WHERE st.key = 'impression_discount'), 0.5),
           coalesce(max(st.value::float8) FILTER (WHERE st.key = 'nope_weight'), 0),
           coalesce(max(st.value::float8) FILTER (WHERE st.key = 'mute_weight'), 0.5),
           least(p_limit, floor(p_limit * coalesce(p_explore_share, max(st.value::float8) FILTER (WHERE st.key = 'explore_share'), 0.2)
                                + 0.5))::integer,
           greatest(1, coalesce(max(st.value::float8) FILTER (WHERE st.key = 'onboarding_fade_likes'), 10))
    INTO div, disc, nope_w, mute_w, xn, fade
    FROM settings st WHERE st.key IN ('diversity', 'impression_discount', 'nope_weight', 'mute_weight', 'explore_share',
                                      'onboarding_fade_likes');
    IF coalesce((SELECT value::timestamptz FROM settings WHERE key = 'popular_at'), '-infinity')
       <= now() - interval '5 minutes' THEN
        PERFORM refresh_popular(interval '5 minutes');
    END IF;
    SELECT * INTO hid FROM deck_hidden(p_user_id, coalesce(p_exclude_impressions, true), p_deck_id);
    IF nope_w > 0 OR (mute_w > 0 AND cardinality(hid.muted_ids) > 0) THEN  -- (a call pays for its SET)
        SELECT ng.ids, ng.weights INTO neg_ids, neg_w FROM negatives(p_user_id, hid.muted_ids) ng;
    END IF;
    disc := CASE WHEN hid.stale THEN disc ELSE 0 END;
    pool := CASE WHEN div > 0 OR cardinality(neg_ids) > 0 OR disc > 0 THEN greatest(p_limit, least(4 * p_limit, 200))
                 ELSE p_limit END;
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
    IF m.version IS NOT NULL AND EXISTS (SELECT 1 FROM user_preferences u WHERE u.user_id = p_user_id) THEN
        -- the onboarding fade: what they picked at sign-up, fewer cards of it with each like
        onb := ceil(p_limit * greatest(0, 1 - (SELECT count(*) FROM (
                   SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(p_user_id) AND d.decision_type = 'like'
                   LIMIT ceil(fade)::integer) l)::float8 / fade))::integer;
    END IF;
    IF onb > 0 AND (onb >= p_limit OR q IS NULL) THEN
        -- onboarding: until their first like (or while the model has no vector for them), the picks alone
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
    IF div > 0 OR cardinality(neg_ids) > 0 OR disc > 0 THEN
        -- MMR over the pool: each card unlike those above it and the negatives, stale cards discounted
        SELECT coalesce(array_agg(r.video_id ORDER BY r.ord), '{}'), coalesce(array_agg(r.score ORDER BY r.ord), '{}')
        INTO ids, scores
        FROM mmr(m.version, ids, scores, p_limit, div, neg_ids, neg_w, p_user_id, disc) r;
    END IF;
    IF onb > 0 THEN  -- the onboarding fade: the picks' videos among the ranked cards (exploration waits)
        pv := preference_vector(m.version, p_user_id);
        SELECT coalesce(array_agg(o.video_id ORDER BY o.ord), '{}'), coalesce(array_agg(o.score ORDER BY o.ord), '{}')
        INTO xids, xscores
        FROM onboarding_deck(m.version, pv, p_user_id, onb, hid.ids || ids, hid.tags, hid.performers, hid.makers, hid.n_mutes) o;
        xsrc := 'onboarding';
    END IF;
    IF xn > 0 AND cardinality(xids) = 0 THEN  -- exploration: Thompson-sampled new videos
        xsrc := 'explore';
        IF coalesce((SELECT value::timestamptz FROM settings WHERE key = 'explore_at'), '-infinity')
           <= now() - interval '1 minute' THEN
            PERFORM refresh_explore(interval '1 minute');
        END IF;
        SELECT coalesce(array_agg(x.video_id ORDER BY x.o), '{}'), coalesce(array_agg(x.score ORDER BY x.o), '{}')
        INTO xids, xscores
        FROM explore_pick(m.version, q, p_user_id, xn, hid.ids, hid.tags, hid.performers, hid.makers, hid.n_mutes, ids)
             WITH ORDINALITY AS x(video_id, score, o);
    END IF;
    IF cardinality(xids) > 0 THEN  -- at evenly spread positions, as serve/recommend.py deal()
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
           CASE WHEN s.ord = ANY (xpos) THEN xsrc ELSE src END,
           CASE WHEN s.ord > (SELECT count(*) FROM fresh) THEN ARRAY['seen before']
                WHEN src = 'cold_start' AND seg IS NOT NULL
                     AND EXISTS (SELECT 1 FROM segment_popular sp WHERE sp.segment = seg AND sp.video_id = s.video_id)
                     THEN ARRAY['popular in your age group and region']
                WHEN src = 'cold_start' THEN ARRAY['popular and recent']
                WHEN s.ord > cardinality(ids) THEN ARRAY['popular']
                WHEN s.ord = ANY (xpos) AND xsrc = 'explore' THEN ARRAY['new video']
                WHEN s.ord = ANY (xpos) THEN ARRAY['your picks']
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
