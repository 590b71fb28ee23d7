-- Feature JSON of each user (NULL for an unknown one), as of now: the batch job and serving share it.
SELECT u, get_user_embedding_features(u, now(), %(max_history)s) FROM unnest(%(user_ids)s::text[]) u;
