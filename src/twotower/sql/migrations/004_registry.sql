-- Every change of the default model, so `twotower models rollback` knows where to go back.
CREATE TABLE IF NOT EXISTS model_activations (
    id            bigserial PRIMARY KEY,
    version       text NOT NULL REFERENCES embedding_model_versions (version) ON DELETE CASCADE,
    previous      text,
    action        text NOT NULL CHECK (action IN ('activate', 'rollback', 'traffic')),
    traffic       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);
