-- Onboarding: the tags, performers and makers a user picked at sign-up. A user without likes
-- gets a first vector from them (twotower.preference_vector), `source: onboarding`, until their
-- first like. Keyed on user_id, so account deletion (users.forget) removes them.
CREATE TABLE IF NOT EXISTS user_preferences (
    user_id     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('tag', 'performer', 'maker')),
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, kind, value)
);
