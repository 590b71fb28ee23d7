SELECT video_id FROM user_video_decisions WHERE user_id = %(user_id)s;
