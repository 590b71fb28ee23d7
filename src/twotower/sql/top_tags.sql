SELECT t.tag_name, count(*) AS likes
FROM src_decisions d JOIN src_video_tags t ON t.video_id = d.video_id
WHERE d.decision_type = 'like'
GROUP BY t.tag_name ORDER BY likes DESC, t.tag_name LIMIT %(n)s;
