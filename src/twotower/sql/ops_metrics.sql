-- Operations gauges for /metrics, read by the service in the background every
-- serving.ops_refresh_seconds (never per request): per job, the latest run's status and
-- duration, the last success and the failures of the last 24 hours; per active version, users
-- whose stored vector is older than their last decision, users with a vector, videos without one.
SELECT 'job' AS kind, j.job AS key,
       (SELECT extract(epoch FROM max(r.finished_at)) FROM batch_runs r WHERE r.job = j.job AND r.status = 'success') AS a,
       (SELECT CASE WHEN r.status = 'failed' THEN 1 ELSE 0 END FROM batch_runs r
        WHERE r.job = j.job AND r.status <> 'running' ORDER BY r.id DESC LIMIT 1) AS b,
       (SELECT extract(epoch FROM r.finished_at - r.started_at) FROM batch_runs r
        WHERE r.job = j.job AND r.status <> 'running' ORDER BY r.id DESC LIMIT 1) AS c,
       (SELECT count(*) FROM batch_runs r WHERE r.job = j.job AND r.status = 'failed'
        AND r.started_at > now() - interval '24 hours') AS d
FROM (SELECT DISTINCT job FROM batch_runs) j
UNION ALL
SELECT 'version', v.version,
       (SELECT count(*) FROM user_embeddings e
        JOIN (SELECT d.user_id, max(d.created_at) AS last FROM src_decisions d GROUP BY d.user_id) l
          ON l.user_id = e.user_id
        WHERE e.model_version = v.version AND e.last_updated < l.last),
       (SELECT count(*) FROM user_embeddings e WHERE e.model_version = v.version),
       (SELECT count(*) FROM src_videos s WHERE NOT EXISTS (
            SELECT 1 FROM video_embeddings e WHERE e.model_version = v.version AND e.video_id = s.id)),
       NULL
FROM embedding_model_versions v WHERE v.is_active;
