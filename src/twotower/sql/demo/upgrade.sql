-- The demo tables of an older install, brought up to date (twotower created them, so it may).
ALTER TABLE video_tags ADD COLUMN IF NOT EXISTS created_at timestamptz;
ALTER TABLE video_performers ADD COLUMN IF NOT EXISTS created_at timestamptz;
