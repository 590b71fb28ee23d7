-- A hybrid version with the user-content MLP is "sql+onnx": the like-history sum is computed in
-- SQL (history_embeddings), the small MLP by whoever holds user_content.onnx (the Edge Function,
-- the service), so the big history table never has to leave the database.
ALTER TABLE embedding_model_versions DROP CONSTRAINT IF EXISTS embedding_model_versions_user_vector_check;
ALTER TABLE embedding_model_versions ADD CONSTRAINT embedding_model_versions_user_vector_check
    CHECK (user_vector IN ('sql', 'sql+onnx', 'onnx'));
