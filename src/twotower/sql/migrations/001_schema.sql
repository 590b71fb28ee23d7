-- The app's source tables (Supabase-compatible `public` schema) and the tables twotower owns.
-- IDs are opaque text; nullable metadata (price, duration, release date) is allowed.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS profiles (
    user_id       text PRIMARY KEY,
    display_name  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    age_range     text,
    region        text,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS videos (
    id                      text PRIMARY KEY,
    title                   text,
    description             text,
    genre                   text,
    maker                   text,
    price                   double precision CHECK (price IS NULL OR price >= 0),
    duration_seconds        integer CHECK (duration_seconds IS NULL OR duration_seconds >= 0),
    product_released_at     timestamptz,
    distribution_started_at timestamptz,
    published_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS videos_updated_at_idx ON videos (updated_at);

CREATE TABLE IF NOT EXISTS video_tags (
    video_id  text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    tag_name  text NOT NULL,
    PRIMARY KEY (video_id, tag_name)
);

CREATE TABLE IF NOT EXISTS video_performers (
    video_id        text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    performer_name  text NOT NULL,
    PRIMARY KEY (video_id, performer_name)
);

CREATE TABLE IF NOT EXISTS user_video_decisions (
    user_id        text NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    video_id       text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    decision_type  text NOT NULL CHECK (decision_type IN ('like', 'nope')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX IF NOT EXISTS decisions_user_time_idx ON user_video_decisions (user_id, created_at);
CREATE INDEX IF NOT EXISTS decisions_time_idx ON user_video_decisions (created_at);
CREATE INDEX IF NOT EXISTS decisions_video_idx ON user_video_decisions (video_id);

-- Tables we own. The embedding column has no fixed dimension: each model version chooses its
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
    video_id       text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    embedding      vector NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version, video_id)
);

CREATE TABLE IF NOT EXISTS user_embeddings (
    model_version  text NOT NULL,
    user_id        text NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    embedding      vector NOT NULL,
    last_updated   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_version, user_id)
);
