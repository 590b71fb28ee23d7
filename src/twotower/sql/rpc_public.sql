-- The public functions an app calls from supabase-js besides recommend_videos (run by every
-- `twotower db init` after rpc.sql): the signed-in user's mutes, diversity setting and sign-up
-- picks, and the grants on every public function twotower owns.

-- Whom a public function acts for: the signed-in user (a user may name only itself), or for the
-- service role (or the owner) p_user_id, else the token's sub. p_fn and p_what word the errors.
CREATE OR REPLACE FUNCTION twotower.acting_user(p_user_id text, p_fn text, p_what text)
RETURNS text LANGUAGE plpgsql STABLE SET search_path = twotower, public, pg_catalog AS $fn$
DECLARE
    caller text := current_setting('role');
    sub text := auth.jwt() ->> 'sub';
BEGIN
    IF caller IN ('authenticated', 'anon') THEN
        IF sub IS NULL THEN
            RAISE EXCEPTION 'no signed-in user: call % with a user''s access token', p_fn USING ERRCODE = '42501';
        END IF;
        IF p_user_id IS NOT NULL AND p_user_id <> sub THEN
            RAISE EXCEPTION 'a user may only change their own %', p_what USING ERRCODE = '42501';
        END IF;
        RETURN sub;
    END IF;
    IF coalesce(p_user_id, sub) IS NULL THEN
        RAISE EXCEPTION 'pass p_user_id: the caller (%) names no user', caller USING ERRCODE = '22023';
    END IF;
    RETURN coalesce(p_user_id, sub);
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
    who text := twotower.acting_user(p_user_id, 'twotower_mute', 'mutes');
BEGIN
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
    who text := twotower.acting_user(p_user_id, 'twotower_set_diversity', 'settings');
BEGIN
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
    who text := twotower.acting_user(p_user_id, 'twotower_set_preferences', 'preferences');
BEGIN
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
