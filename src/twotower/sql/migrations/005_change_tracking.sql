-- Change tracking for the incremental batch job: whoever edits a video (the app, an import,
-- psql), its updated_at moves, and so does its parent video's when its tags/performers change.
CREATE OR REPLACE FUNCTION twotower_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS videos_touch_updated_at ON videos;
CREATE TRIGGER videos_touch_updated_at BEFORE UPDATE ON videos
    FOR EACH ROW EXECUTE FUNCTION twotower_touch_updated_at();
DROP TRIGGER IF EXISTS profiles_touch_updated_at ON profiles;
CREATE TRIGGER profiles_touch_updated_at BEFORE UPDATE ON profiles
    FOR EACH ROW EXECUTE FUNCTION twotower_touch_updated_at();

CREATE OR REPLACE FUNCTION twotower_touch_parent_video() RETURNS trigger LANGUAGE plpgsql AS $$
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
                           'FOR EACH STATEMENT EXECUTE FUNCTION twotower_touch_parent_video()',
                           t || '_touch_' || op, op, t, CASE op WHEN 'insert' THEN 'NEW' ELSE 'OLD' END);
        END LOOP;
    END LOOP;
END $$;
