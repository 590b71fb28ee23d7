-- What a fill must skip: decided videos (when excluded), the deck filter (rpc.sql deck_hidden) with
-- the cards still queued for the database, and those of the candidates that carry a muted tag,
-- performer or maker.
WITH h AS MATERIALIZED (SELECT * FROM twotower.deck_hidden(%(user_id)s, %(imp)s, %(deck)s))
SELECT d.video_id FROM src_decisions d WHERE %(decided)s AND d.user_key = twotower.user_key(%(user_id)s)
UNION ALL SELECT unnest(h.ids || %(pending)s::text[]) FROM h
UNION ALL SELECT c FROM h, unnest(%(candidates)s::text[]) AS c
          WHERE h.n_mutes > 0 AND twotower.is_muted(c, h.tags, h.performers, h.makers);
