-- Operations: batch-update runs and watermark, and the served-recommendation log.
CREATE TABLE IF NOT EXISTS batch_runs (
    id              bigserial PRIMARY KEY,
    job             text NOT NULL,
    model_version   text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'success', 'failed')),
    watermark_from  timestamptz,
    watermark_to    timestamptz,
    users_embedded  integer NOT NULL DEFAULT 0,
    videos_embedded integer NOT NULL DEFAULT 0,
    error           text
);
CREATE INDEX IF NOT EXISTS batch_runs_job_idx ON batch_runs (job, model_version, status, finished_at);

CREATE TABLE IF NOT EXISTS recommendation_log (
    id             bigserial PRIMARY KEY,
    user_id        text NOT NULL,
    model_version  text,
    source         text NOT NULL,
    video_ids      text[] NOT NULL,
    served_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS recommendation_log_user_idx ON recommendation_log (user_id, served_at);
