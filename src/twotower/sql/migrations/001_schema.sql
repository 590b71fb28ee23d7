-- The tables twotower owns, in its own schema (`twotower`; never `public`). They refer to the
-- app's videos and users by id only (text): no foreign key into tables twotower does not own.
-- The embedding column has no fixed dimension: each model version chooses its
-- own, and its HNSW index is a partial expression index cast to that dimension (see embed.py).
CREATE TABLE IF NOT EXISTS embedding_model_versions (
    id             bigserial PRIMARY KEY,
    version        text NOT NULL UNIQUE,
    model_type     text NOT NULL DEFAULT 'two_tower',
    model_path     text NOT NULL,
    embedding_dim  integer NOT NULL CHECK (embedding_dim > 0),
    metric         text NOT NULL DEFAULT 'ip' CHECK (metric IN ('ip', 'cosine')),
    is_active      boolean NOT NULL DEFAULT false,
    is_default     boolean NOT NULL DEFAULT false,
    traffic_share  double precision NOT NULL DEFAULT 0 CHECK (traffic_share >= 0 AND traffic_share <= 1),
    metrics        jsonb NOT NULL DEFAULT '{}'::jsonb,
    activated_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now()
);
-- At most one default version at a time.
CREATE UNIQUE INDEX IF NOT EXISTS one_default_model ON embedding_model_versions (is_default) WHERE is_default;

CREATE TABLE IF NOT EXISTS feature_importance (
    model_version_id  bigint NOT NULL REFERENCES embedding_model_versions (id) ON DELETE CASCADE,
    feature_name      text NOT NULL,
    importance_score  double precision NOT NULL,
    PRIMARY KEY (model_version_id, feature_name)
);

CREATE TABLE IF NOT EXISTS video_embeddings (
    model_version  text NOT NULL,
    video_id       text NOT NULL,
    embedding      vector NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version, video_id)
);

CREATE TABLE IF NOT EXISTS user_embeddings (
    model_version  text NOT NULL,
    user_id        text NOT NULL,
    embedding      vector NOT NULL,
    last_updated   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version, user_id)
);
