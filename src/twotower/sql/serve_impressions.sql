-- The impressions of a batch of served lists (the log flush): one row per (user, video), the
-- count of times served added, the latest time and deck kept. The four arrays come as literals
-- (state.text_array): one string each is much cheaper to send than a list of values.
INSERT INTO impressions AS i (user_id, video_id, first_served_at, last_served_at, times_served, deck_id)
SELECT x.u, x.v, min(x.t), max(x.t), count(*), (array_agg(x.deck ORDER BY x.t DESC))[1]
FROM unnest(%(users)s::text::text[], %(videos)s::text::text[], %(times)s::text::timestamptz[],
            %(decks)s::text::text[]) AS x(u, v, t, deck)
GROUP BY x.u, x.v
ON CONFLICT (user_id, video_id) DO UPDATE
SET last_served_at = greatest(i.last_served_at, excluded.last_served_at),
    times_served = i.times_served + excluded.times_served,
    deck_id = coalesce(excluded.deck_id, i.deck_id);
