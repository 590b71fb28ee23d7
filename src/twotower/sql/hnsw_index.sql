CREATE INDEX IF NOT EXISTS {index} ON video_embeddings
USING hnsw ((embedding::vector({dim})) vector_ip_ops) WITH (m = {m}, ef_construction = {ef})
WHERE model_version = {version}
