-- First staged row (tags, performers or decisions) naming a video that exists nowhere.
SELECT src, _row, video_id FROM (
    SELECT 'tags' AS src, s._row, s.video_id FROM stage_tags s
    UNION ALL SELECT 'performers', s._row, s.video_id FROM stage_performers s
    UNION ALL SELECT 'decisions', s._row, s.video_id FROM stage_decisions s
) x
WHERE NOT EXISTS (SELECT 1 FROM stage_videos v WHERE v.id = x.video_id)
  AND NOT EXISTS (SELECT 1 FROM src_videos v WHERE v.id = x.video_id)
ORDER BY src, _row
LIMIT 1;
