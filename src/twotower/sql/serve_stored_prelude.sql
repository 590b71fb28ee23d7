u AS MATERIALIZED (
    SELECT e.embedding::vector({dim}) AS q
    FROM user_embeddings e
    WHERE e.model_version = {version} AND e.user_id = %(user_id)s
      AND vector_norm(e.embedding) > 0  -- a zero vector (only nopes, nothing known): the caller decides
      AND e.last_updated >= coalesce((SELECT max(d.created_at) FROM src_decisions d
                                      WHERE d.user_key = twotower.user_key(%(user_id)s)), '-infinity')
),
