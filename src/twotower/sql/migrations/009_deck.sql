-- The swipe deck. impressions: what each user has been served and not (yet) answered, one row
-- per (user, video): served cards are kept out of the user's decks for serving.impression_ttl_seconds
-- (settings 'impression_ttl_seconds', written by `db init`), and a deck_id continues a deck
-- without repeating its cards. user_mutes: "less of this" (a tag, performer, maker or video
-- that never appears in the user's decks again). Both key on user_id, so account deletion
-- (users.forget) removes them with everything else.
CREATE TABLE IF NOT EXISTS impressions (
    user_id          text NOT NULL,
    video_id         text NOT NULL,
    first_served_at  timestamptz NOT NULL DEFAULT now(),
    last_served_at   timestamptz NOT NULL DEFAULT now(),
    times_served     integer NOT NULL DEFAULT 1,
    deck_id          text,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX IF NOT EXISTS impressions_served_idx ON impressions (last_served_at);

CREATE TABLE IF NOT EXISTS user_mutes (
    user_id     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('tag', 'performer', 'maker', 'video')),
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, kind, value)
);
