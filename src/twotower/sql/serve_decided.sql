SELECT video_id FROM src_decisions WHERE user_id = %(user_id)s;
