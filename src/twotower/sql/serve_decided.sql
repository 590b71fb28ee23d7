SELECT video_id FROM src_decisions WHERE user_key = twotower.user_key(%(user_id)s);
