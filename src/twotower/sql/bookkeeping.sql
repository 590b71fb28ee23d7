-- twotower's own bookkeeping, first in its schema: which numbered migrations are applied, and what
-- twotower created outside its schema (so `db reset` removes exactly that and nothing else).
CREATE SCHEMA IF NOT EXISTS twotower;
CREATE TABLE IF NOT EXISTS twotower.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS twotower.installed (
    object      text PRIMARY KEY,
    detail      text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
