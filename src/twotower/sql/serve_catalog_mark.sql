-- Has the catalogue changed since the service built its reasons index? A tag or performer edit
-- moves its video's updated_at (migration 005); the counts catch deletions.
SELECT (SELECT count(*) FROM videos), (SELECT max(updated_at) FROM videos),
       (SELECT count(*) FROM video_tags), (SELECT count(*) FROM video_performers);
