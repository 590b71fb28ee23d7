-- The feature functions (seed 003 "RPC mode"), get_user_embedding_features and
-- get_item_embedding_features, are defined in sql/rpc.sql, which every `db init` re-runs after
-- the migrations: they read the app's tables through the source views, whose shape follows the
-- `source` mapping, so they are kept in the file that always matches the views.
SELECT 1;
