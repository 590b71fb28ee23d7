-- The seed-shaped source tables of the embedded demo (DESIGN §2), created by `twotower db init`
-- only where twotower runs its own database (or with --demo-tables), in the source schema, and
-- recorded as created by twotower (so `db reset` may drop them, and only them).
-- IDs are opaque text; nullable metadata (price, duration, release date) is allowed.

CREATE TABLE IF NOT EXISTS profiles (
    user_id       text PRIMARY KEY,
    display_name  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    age_range     text,
    region        text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS videos (
    id                      text PRIMARY KEY,
    title                   text,
    description             text,
    genre                   text,
    maker                   text,
    price                   double precision CHECK (price IS NULL OR price >= 0),
    duration_seconds        integer CHECK (duration_seconds IS NULL OR duration_seconds >= 0),
    product_released_at     timestamptz,
    distribution_started_at timestamptz,
    published_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS videos_updated_at_idx ON videos (updated_at);

CREATE TABLE IF NOT EXISTS video_tags (
    video_id    text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    tag_name    text NOT NULL,
    created_at  timestamptz,  -- when the tag was applied, where the source knows (MovieLens user tags)
    PRIMARY KEY (video_id, tag_name)
);

CREATE TABLE IF NOT EXISTS video_performers (
    video_id        text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    performer_name  text NOT NULL,
    created_at      timestamptz,
    PRIMARY KEY (video_id, performer_name)
);

CREATE TABLE IF NOT EXISTS user_video_decisions (
    user_id        text NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    video_id       text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    decision_type  text NOT NULL CHECK (decision_type IN ('like', 'nope')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, video_id)
);
-- The per-user decision index also carries decision_type and video_id, so "this user's recent
-- likes" (reasons, served with every recommendation; the feature function's history) is an
-- index-only scan in time order: no heap visits, no sort.
CREATE INDEX IF NOT EXISTS decisions_user_time_idx ON user_video_decisions (user_id, created_at)
    INCLUDE (decision_type, video_id);
CREATE INDEX IF NOT EXISTS decisions_time_idx ON user_video_decisions (created_at);
CREATE INDEX IF NOT EXISTS decisions_video_idx ON user_video_decisions (video_id);

-- Change tracking for the incremental batch job, on the demo tables (twotower's own): whoever
-- edits a video (an import, psql), its updated_at moves, and so does its parent video's when its
-- tags/performers change. An app's own tables are never given triggers.
CREATE OR REPLACE FUNCTION twotower.touch_updated_at() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS videos_touch_updated_at ON videos;
CREATE TRIGGER videos_touch_updated_at BEFORE UPDATE ON videos
    FOR EACH ROW EXECUTE FUNCTION twotower.touch_updated_at();
DROP TRIGGER IF EXISTS profiles_touch_updated_at ON profiles;
CREATE TRIGGER profiles_touch_updated_at BEFORE UPDATE ON profiles
    FOR EACH ROW EXECUTE FUNCTION twotower.touch_updated_at();

CREATE OR REPLACE FUNCTION twotower.touch_parent_video() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, public AS $$
BEGIN
    UPDATE videos v SET updated_at = now()
    WHERE v.id IN (SELECT video_id FROM changed_rows) AND v.updated_at < now();
    RETURN NULL;
END $$;

DO $$
DECLARE t text; op text;
BEGIN
    FOREACH t IN ARRAY ARRAY['video_tags', 'video_performers'] LOOP
        FOREACH op IN ARRAY ARRAY['insert', 'delete'] LOOP
            EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t || '_touch_' || op, t);
            EXECUTE format('CREATE TRIGGER %I AFTER %s ON %I REFERENCING %s TABLE AS changed_rows '
                           'FOR EACH STATEMENT EXECUTE FUNCTION twotower.touch_parent_video()',
                           t || '_touch_' || op, op, t, CASE op WHEN 'insert' THEN 'NEW' ELSE 'OLD' END);
        END LOOP;
    END LOOP;
END $$;
