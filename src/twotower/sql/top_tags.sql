SELECT t.tag_name, count(*) AS likes
FROM user_video_decisions d JOIN video_tags t ON t.video_id = d.video_id
WHERE d.decision_type = 'like'
GROUP BY t.tag_name ORDER BY likes DESC, t.tag_name LIMIT %(n)s;
