-- Has the catalogue changed since the service built its reasons index? A tag or performer edit
-- moves its video's updated_at (migration 005); the counts catch deletions.
SELECT (SELECT count(*) FROM src_videos), (SELECT max(updated_at) FROM src_videos),
       (SELECT count(*) FROM src_video_tags), (SELECT count(*) FROM src_video_performers);
