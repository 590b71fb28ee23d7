-- Rebuild what bulk_load_pre.sql dropped: sorted index builds and one validating join per key.
ALTER TABLE video_tags ADD CONSTRAINT video_tags_pkey PRIMARY KEY (video_id, tag_name),
    ADD CONSTRAINT video_tags_video_id_fkey FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE;
ALTER TABLE video_performers ADD CONSTRAINT video_performers_pkey PRIMARY KEY (video_id, performer_name),
    ADD CONSTRAINT video_performers_video_id_fkey FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE;
ALTER TABLE user_video_decisions
    ADD CONSTRAINT user_video_decisions_pkey PRIMARY KEY (user_id, video_id),
    ADD CONSTRAINT user_video_decisions_user_id_fkey FOREIGN KEY (user_id) REFERENCES profiles (user_id) ON DELETE CASCADE,
    ADD CONSTRAINT user_video_decisions_video_id_fkey FOREIGN KEY (video_id) REFERENCES videos (id) ON DELETE CASCADE;
CREATE INDEX decisions_user_time_idx ON user_video_decisions (user_id, created_at) INCLUDE (decision_type, video_id);
CREATE INDEX decisions_time_idx ON user_video_decisions (created_at);
CREATE INDEX decisions_video_idx ON user_video_decisions (video_id);
ALTER TABLE video_tags ENABLE TRIGGER USER;
ALTER TABLE video_performers ENABLE TRIGGER USER;
