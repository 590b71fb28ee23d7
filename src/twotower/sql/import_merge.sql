-- Upsert staged rows. A row whose values did not change is left alone (re-import changes nothing);
-- a changed video gets a new updated_at, which the incremental batch job looks for.
INSERT INTO profiles (user_id, display_name, created_at, age_range, region)
SELECT DISTINCT ON (user_id) user_id, display_name, coalesce(created_at, now()), age_range, region
FROM stage_profiles ORDER BY user_id, _row DESC
ON CONFLICT (user_id) DO UPDATE SET
    display_name = excluded.display_name, created_at = excluded.created_at,
    age_range = excluded.age_range, region = excluded.region, updated_at = now()
WHERE (profiles.display_name, profiles.created_at, profiles.age_range, profiles.region)
      IS DISTINCT FROM (excluded.display_name, excluded.created_at, excluded.age_range, excluded.region);

-- Users that only appear in decisions get a profile dated at their first decision.
INSERT INTO profiles (user_id, created_at)
SELECT user_id, min(created_at) FROM stage_decisions GROUP BY user_id
ON CONFLICT (user_id) DO NOTHING;

INSERT INTO videos (id, title, description, genre, maker, price, duration_seconds, product_released_at,
                    distribution_started_at, published_at, created_at)
SELECT DISTINCT ON (id) id, title, description, genre, maker, price, duration_seconds, product_released_at,
       distribution_started_at, published_at, coalesce(created_at, product_released_at, now())
FROM stage_videos ORDER BY id, _row DESC
ON CONFLICT (id) DO UPDATE SET
    title = excluded.title, description = excluded.description, genre = excluded.genre,
    maker = excluded.maker, price = excluded.price, duration_seconds = excluded.duration_seconds,
    product_released_at = excluded.product_released_at,
    distribution_started_at = excluded.distribution_started_at, published_at = excluded.published_at,
    updated_at = now()
WHERE (videos.title, videos.description, videos.genre, videos.maker, videos.price,
       videos.duration_seconds, videos.product_released_at, videos.distribution_started_at,
       videos.published_at)
      IS DISTINCT FROM (excluded.title, excluded.description, excluded.genre, excluded.maker,
       excluded.price, excluded.duration_seconds, excluded.product_released_at,
       excluded.distribution_started_at, excluded.published_at);

-- Tags/performers of a video in the import replace its old ones; a real change bumps updated_at.
-- one row per (tag_name): applied when first applied; NULL if any source row has no time (a genre)
CREATE TEMP TABLE staged_tags ON COMMIT DROP AS
SELECT video_id, tag_name, CASE WHEN bool_or(created_at IS NULL) THEN NULL ELSE min(created_at) END AS created_at
FROM stage_tags GROUP BY video_id, tag_name;
CREATE TEMP TABLE changed_tags ON COMMIT DROP AS
SELECT s.video_id
FROM (SELECT video_id, array_agg(tag_name || '@' || coalesce(created_at::text, '') ORDER BY tag_name) AS a
      FROM staged_tags GROUP BY video_id) s
LEFT JOIN (SELECT video_id, array_agg(tag_name || '@' || coalesce(created_at::text, '') ORDER BY tag_name) AS a
           FROM video_tags WHERE video_id IN (SELECT video_id FROM stage_tags) GROUP BY video_id) t USING (video_id)
WHERE s.a IS DISTINCT FROM t.a;
DELETE FROM video_tags t USING changed_tags c WHERE t.video_id = c.video_id;
INSERT INTO video_tags (video_id, tag_name, created_at)
SELECT s.video_id, s.tag_name, s.created_at FROM staged_tags s JOIN changed_tags c ON c.video_id = s.video_id;

-- one row per (performer_name): applied when first applied; NULL if any source row has no time (a genre)
CREATE TEMP TABLE staged_performers ON COMMIT DROP AS
SELECT video_id, performer_name, CASE WHEN bool_or(created_at IS NULL) THEN NULL ELSE min(created_at) END AS created_at
FROM stage_performers GROUP BY video_id, performer_name;
CREATE TEMP TABLE changed_performers ON COMMIT DROP AS
SELECT s.video_id
FROM (SELECT video_id, array_agg(performer_name || '@' || coalesce(created_at::text, '') ORDER BY performer_name) AS a
      FROM staged_performers GROUP BY video_id) s
LEFT JOIN (SELECT video_id, array_agg(performer_name || '@' || coalesce(created_at::text, '') ORDER BY performer_name) AS a
           FROM video_performers WHERE video_id IN (SELECT video_id FROM stage_performers) GROUP BY video_id) t USING (video_id)
WHERE s.a IS DISTINCT FROM t.a;
DELETE FROM video_performers t USING changed_performers c WHERE t.video_id = c.video_id;
INSERT INTO video_performers (video_id, performer_name, created_at)
SELECT s.video_id, s.performer_name, s.created_at FROM staged_performers s JOIN changed_performers c ON c.video_id = s.video_id;

UPDATE videos v SET updated_at = now()
WHERE v.id IN (SELECT video_id FROM changed_tags UNION SELECT video_id FROM changed_performers)
  AND v.updated_at < now();

-- The latest answer for a (user, video) pair wins. New rows are inserted in file order, so their
-- seq (the identity column) keeps the import order that breaks ties in time.
INSERT INTO user_video_decisions (user_id, video_id, decision_type, created_at)
SELECT user_id, video_id, decision_type, created_at FROM (
    SELECT DISTINCT ON (user_id, video_id) user_id, video_id, decision_type, created_at, _row
    FROM stage_decisions ORDER BY user_id, video_id, created_at DESC, _row DESC
) latest ORDER BY _row
ON CONFLICT (user_id, video_id) DO UPDATE SET
    decision_type = excluded.decision_type, created_at = excluded.created_at
WHERE excluded.created_at > user_video_decisions.created_at
   OR (excluded.created_at = user_video_decisions.created_at
       AND excluded.decision_type IS DISTINCT FROM user_video_decisions.decision_type);
