-- The dashboard's latest batch runs.
SELECT id, job, model_version, status, started_at, extract(epoch FROM coalesce(finished_at, now()) - started_at),
       users_embedded, videos_embedded, error
FROM batch_runs ORDER BY id DESC LIMIT %(n)s
