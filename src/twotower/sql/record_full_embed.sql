-- A full `twotower embed` counts as a successful refresh: batch-update continues from its start.
INSERT INTO batch_runs (job, model_version, started_at, finished_at, status, watermark_from, watermark_to,
                        videos_embedded, users_embedded)
VALUES ('embed-refresh', %(version)s, %(started)s, now(), 'success', NULL, %(started)s, %(videos)s, %(users)s);
