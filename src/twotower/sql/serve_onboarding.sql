-- Onboarding (rpc.sql preference_vector, onboarding_deck): a user without likes who picked
-- tags, performers or makers at sign-up gets the picks' videos ranked by their preference vector,
-- through the deck filter (plus the cards still queued for the database). No row: the caller
-- serves the cold-start list.
WITH h AS MATERIALIZED (
    SELECT ids || %(pending)s::text[] AS ids, tags, performers, makers, n_mutes
    FROM twotower.deck_hidden(%(user_id)s, %(imp)s, %(deck)s)
),
q AS MATERIALIZED (
    SELECT twotower.preference_vector(%(version)s, %(user_id)s) AS q
    WHERE NOT EXISTS (SELECT 1 FROM src_decisions d
                      WHERE d.user_key = twotower.user_key(%(user_id)s) AND d.decision_type = 'like')
)
SELECT o.video_id, o.score
FROM q, h, twotower.onboarding_deck(%(version)s, q.q, %(user_id)s, %(n)s, h.ids, h.tags, h.performers, h.makers, h.n_mutes) o
WHERE q.q IS NOT NULL
ORDER BY o.ord;
