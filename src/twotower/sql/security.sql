-- Security by default (run by every `twotower db init`, after the schema and the source views):
-- row level security on every table twotower owns; `anon` gets nothing; `authenticated` may read
-- only its own rows of user_embeddings and recommendation_log and call the feature functions for
-- itself; `service_role` (and the owner) may do everything. Roles that do not exist on this
-- server (a plain PostgreSQL) are skipped.
DO $$
DECLARE
    t text;
    r text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'twotower' AND c.relkind IN ('r', 'p') LOOP
        EXECUTE format('ALTER TABLE twotower.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('REVOKE ALL ON twotower.%I FROM PUBLIC', t);
    END LOOP;
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA twotower FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA twotower FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON ALL FUNCTIONS IN SCHEMA twotower FROM PUBLIC';
    EXECUTE 'REVOKE ALL ON SCHEMA twotower FROM PUBLIC';
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA twotower FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA twotower FROM %I', r);
        EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA twotower FROM %I', r);
        EXECUTE format('REVOKE ALL ON SCHEMA twotower FROM %I', r);
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        GRANT USAGE ON SCHEMA twotower TO authenticated;
        GRANT SELECT ON twotower.user_embeddings, twotower.recommendation_log TO authenticated;
        GRANT EXECUTE ON FUNCTION twotower.get_user_embedding_features(text, timestamptz, integer),
                                  twotower.get_item_embedding_features(text) TO authenticated;
        DROP POLICY IF EXISTS own_embeddings ON twotower.user_embeddings;
        CREATE POLICY own_embeddings ON twotower.user_embeddings FOR SELECT TO authenticated
            USING (user_id = (SELECT auth.jwt() ->> 'sub'));
        DROP POLICY IF EXISTS own_log ON twotower.recommendation_log;
        CREATE POLICY own_log ON twotower.recommendation_log FOR SELECT TO authenticated
            USING (user_id = (SELECT auth.jwt() ->> 'sub'));
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        GRANT USAGE ON SCHEMA twotower TO service_role;
        GRANT ALL ON ALL TABLES IN SCHEMA twotower TO service_role;
        GRANT ALL ON ALL SEQUENCES IN SCHEMA twotower TO service_role;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA twotower TO service_role;
        FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = 'twotower' AND c.relkind IN ('r', 'p') LOOP
            EXECUTE format('DROP POLICY IF EXISTS service_all ON twotower.%I', t);
            EXECUTE format('CREATE POLICY service_all ON twotower.%I FOR ALL TO service_role '
                           'USING (true) WITH CHECK (true)', t);
        END LOOP;
    END IF;
END $$;
