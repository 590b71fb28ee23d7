-- Online metrics per served model version: of the videos shown in served lists, how many the
-- user then decided (CTR: answered/shown) and liked (like rate: likes/answered, likes/shown);
-- the per-user rows of ab_users.sql, summed.
SELECT version, sum(lists)::bigint, sum(shown)::bigint, sum(answered)::bigint, sum(liked)::bigint
FROM ({ab_users}) u
GROUP BY version ORDER BY version;
