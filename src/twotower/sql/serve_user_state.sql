-- The stored user vector of a version, whether it is fresh (newer than the user's last
-- decision), and whether the user has decided anything at all.
SELECT
    (SELECT e.embedding FROM user_embeddings e WHERE e.model_version = %(version)s AND e.user_id = %(user_id)s) AS embedding,
    coalesce((SELECT e.last_updated FROM user_embeddings e WHERE e.model_version = %(version)s AND e.user_id = %(user_id)s)
             >= (SELECT max(d.created_at) FROM src_decisions d WHERE d.user_key = twotower.user_key(%(user_id)s)), false) AS fresh,
    EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(%(user_id)s)) AS has_decisions;
