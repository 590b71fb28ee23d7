-- Onboarding (rpc.sql preference_vector, onboarding_deck): a user who picked tags, performers or
-- makers at sign-up and has fewer likes than the fade (settings onboarding_fade_likes) gets up
-- to %(n)s of the picks' videos ranked by their preference vector, through the deck filter (plus
-- the cards still queued for the database and %(taken)s, the ranked cards they are dealt among).
-- No row: the caller serves the cold-start list (or the ranked deck alone).
WITH h AS MATERIALIZED (
    SELECT ids || %(pending)s::text[] || %(taken)s::text[] AS ids, tags, performers, makers, n_mutes
    FROM twotower.deck_hidden(%(user_id)s, %(imp)s, %(deck)s)
),
f AS (
    SELECT greatest(1, coalesce((SELECT value::float8 FROM settings WHERE key = 'onboarding_fade_likes'), 10)) AS f
),
q AS MATERIALIZED (
    SELECT twotower.preference_vector(%(version)s, %(user_id)s) AS q
    WHERE (SELECT count(*) FROM (SELECT 1 FROM src_decisions d
                                 WHERE d.user_key = twotower.user_key(%(user_id)s) AND d.decision_type = 'like'
                                 LIMIT (SELECT ceil(f.f)::integer FROM f)) l) < (SELECT f.f FROM f)
)
SELECT o.video_id, o.score
FROM q, h, twotower.onboarding_deck(%(version)s, q.q, %(user_id)s, %(n)s, h.ids, h.tags, h.performers, h.makers, h.n_mutes) o
WHERE q.q IS NOT NULL
ORDER BY o.ord;
