-- The dashboard's feature importance of the active versions, largest first.
SELECT m.version, f.feature_name, f.importance_score
FROM feature_importance f JOIN embedding_model_versions m ON m.id = f.model_version_id
WHERE m.is_active ORDER BY m.version, f.importance_score DESC
