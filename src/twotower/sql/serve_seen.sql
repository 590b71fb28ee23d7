-- Nothing else left for the deck: the user's oldest impressions (never a card of this deck, a
-- decided video or anything muted), as recommend_videos falls back to them.
WITH h AS MATERIALIZED (SELECT * FROM twotower.deck_hidden(%(user_id)s, true, %(deck)s))
SELECT i.video_id FROM impressions i, h
WHERE i.user_id = %(user_id)s AND (%(deck)s::text IS NULL OR i.deck_id IS DISTINCT FROM %(deck)s) AND NOT (i.video_id = ANY (h.muted_ids))
  AND NOT (i.video_id = ANY (%(taken)s::text[]))
  AND NOT EXISTS (SELECT 1 FROM src_decisions d WHERE d.user_key = twotower.user_key(%(user_id)s)
                  AND d.video_key = twotower.video_key(i.video_id))
  AND (h.n_mutes = 0 OR NOT twotower.is_muted(i.video_id, h.tags, h.performers, h.makers))
ORDER BY i.last_served_at, i.video_id
LIMIT %(n)s;
