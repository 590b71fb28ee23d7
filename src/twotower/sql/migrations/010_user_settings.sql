-- A user's own deck settings, chosen in the app (seed: 多様性 vs 精度, a setting the user picks).
-- diversity: 0 (the plain ranking) .. 1 (each card as unlike the ones above it as possible),
-- used when a request names none (twotower.deck_diversity). Keyed on user_id, so account
-- deletion (users.forget) removes it with everything else.
CREATE TABLE IF NOT EXISTS user_settings (
    user_id     text PRIMARY KEY,
    diversity   double precision CHECK (diversity >= 0 AND diversity <= 1),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
