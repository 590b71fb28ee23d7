-- Bulk load into empty tables (synth): drop keys and indexes first, rebuild after the COPY.
-- Runs inside the load's transaction, so a failure restores everything (PostgreSQL docs,
-- "Populating a Database"). Keep in step with the migrations (001, 006) and bulk_load_post.sql.
ALTER TABLE user_video_decisions
    DROP CONSTRAINT user_video_decisions_user_id_fkey,
    DROP CONSTRAINT user_video_decisions_video_id_fkey,
    DROP CONSTRAINT user_video_decisions_pkey;
DROP INDEX decisions_user_time_idx, decisions_time_idx, decisions_video_idx;
ALTER TABLE video_tags DROP CONSTRAINT video_tags_video_id_fkey, DROP CONSTRAINT video_tags_pkey;
ALTER TABLE video_performers DROP CONSTRAINT video_performers_video_id_fkey,
    DROP CONSTRAINT video_performers_pkey;
-- Every video is new in a bulk load: no need to touch updated_at per tag/performer.
ALTER TABLE video_tags DISABLE TRIGGER USER;
ALTER TABLE video_performers DISABLE TRIGGER USER;
