-- Per-transaction search settings (is_local = true: they end with the transaction, so a pooled
-- connection never carries them to its next user). One round trip instead of three SETs.
SELECT set_config('hnsw.ef_search', %(ef_search)s, true),
       set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('hnsw.max_scan_tuples', %(max_scan_tuples)s, true);
