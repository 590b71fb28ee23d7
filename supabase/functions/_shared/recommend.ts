// The two functions' work. Every decision that the database can make stays in the database: the
// A/B arm (twotower.ab_version), the history sum (twotower.sql_user_vector), the filtered HNSW
// search with its fills, the cold-start list, reasons and the recommendation log
// (twotower.recommend). The function adds only what SQL cannot run: the user tower, or its
// content MLP, on the feature JSON.

import { type Mode, model, runUserTower } from "./artifact.ts";
import type { Sql } from "./db.ts";
import type { FeatureJson } from "./features.ts";
import { HttpError } from "./http.ts";

export interface Arm {
  version: string;
  mode: Mode;
  decided: boolean; // any decision at all (none: the cold-start list, as the service)
  stored: number[] | null; // the stored user vector, when newer than the user's last decision
  features: FeatureJson | null;
  history: number[] | null; // the SQL sum of the liked videos' history rows
}

export interface Item {
  video_id: string;
  score: number;
  reasons: string[];
  source?: "explore" | "onboarding"; // only on exploration's cards and the fading onboarding's
}

/** The versions to serve (the user's arm) or to refresh (every active one), in one round trip:
 * the stored vector when it is fresh (newer than the user's last decision: the common case when
 * update_user_embedding runs after each swipe), else what the vector is built from (the feature
 * JSON, the SQL history sum), only where the version needs it. */
async function arms(sql: Sql, userId: string, all: boolean): Promise<Arm[]> {
  const rows = await sql`
    WITH m AS (
        SELECT v.version, v.user_vector AS mode, v.max_history FROM twotower.embedding_model_versions v
        WHERE CASE WHEN ${all}::boolean THEN v.is_active AND v.traffic_share > 0
                   ELSE v.version = twotower.ab_version(${userId}) END
    ), last AS (
        SELECT max(d.created_at) AS at FROM twotower.src_decisions d WHERE d.user_key = twotower.user_key(${userId})
    ), s AS (
        SELECT m.*, last.at IS NOT NULL AS decided,
               CASE WHEN NOT ${all}::boolean AND m.mode <> 'sql' THEN (
                   SELECT e.embedding::text FROM twotower.user_embeddings e
                   WHERE e.model_version = m.version AND e.user_id = ${userId} AND e.last_updated >= last.at) END AS stored
        FROM m, last
    )
    SELECT s.version, s.mode, s.decided, s.stored,
           CASE WHEN s.stored IS NULL AND s.mode <> 'sql'
                THEN twotower.get_user_embedding_features(${userId}, now(), s.max_history) END AS features,
           CASE WHEN s.stored IS NULL AND s.mode <> 'onnx'
                THEN twotower.sql_user_vector(s.version, ${userId}, s.max_history)::text END AS history
    FROM s ORDER BY s.version`;
  return rows.map((r) => ({
    version: r.version, mode: r.mode as Mode, decided: r.decided,
    stored: r.stored ? JSON.parse(r.stored) : null, features: r.features ?? null,
    history: r.history ? JSON.parse(r.history) : null,
  }));
}

/** The user vector of one arm, or null when there is nothing to build it from (no likes for a
 * "sql" version, an unknown user for the others). */
export async function userVector(arm: Arm): Promise<Float32Array | null> {
  if (arm.mode === "sql") return arm.history ? Float32Array.from(arm.history) : null;
  if (arm.features === null) return null;
  const m = await model(arm.version, arm.mode);
  const { output } = await runUserTower(m, arm.features);
  const v = Float32Array.from(output);
  if (arm.mode === "sql+onnx" && arm.history) arm.history.forEach((x, i) => (v[i] += x));
  return v;
}

const literal = (v: Float32Array) => `[${Array.from(v).join(",")}]`;

export interface Recommendations {
  user_id: string;
  model_version: string | null;
  source: string;
  items: Item[];
  took_ms: number;
}

/** POST /functions/v1/two_tower_recommendations, as POST /v1/recommendations answers. */
/** The deck filter of a request (POST /v1/recommendations' exclude_impressions and deck_id). */
export interface Deck {
  impressions: boolean;
  deckId: string | null;
  diversity?: number | null; // MMR; null: the user's setting, else the installation's default
  explore?: number | null; // share of new videos (Thompson sampling); null: the installation's
}

export async function recommend(sql: Sql, userId: string, limit: number, t0: number,
                                deck: Deck = { impressions: true, deckId: null, diversity: null, explore: null }): Promise<Recommendations> {
  const [arm] = await arms(sql, userId, false);
  // The version's model is loaded (and verified) before anything is served with it, even when
  // the stored vector makes running it unnecessary: a tampered bundle is refused at once.
  if (arm && arm.mode !== "sql") await model(arm.version, arm.mode);
  const q = !arm || arm.mode === "sql" || !arm.decided ? null
    : arm.stored ? Float32Array.from(arm.stored) : await userVector(arm);
  // A "sql" version, a user the model cannot place (cold start) or no active model: the
  // database does it all. Otherwise it searches with the vector built here.
  const rows = q
    ? await sql`SELECT video_id, score, model_version, source, reasons
                FROM twotower.recommend(${userId}, ${limit}, ${arm.version}, ${literal(q)},
                                        ${deck.impressions}, ${deck.deckId}, ${deck.diversity ?? null}::float8,
                                        ${deck.explore ?? null}::float8)`
    : await sql`SELECT video_id, score, model_version, source, reasons
                FROM twotower.recommend(${userId}, ${limit}, NULL, NULL, ${deck.impressions}, ${deck.deckId},
                                        ${deck.diversity ?? null}::float8, ${deck.explore ?? null}::float8)`;
  // exploration's cards, and the picks' cards dealt into a ranked deck while onboarding fades,
  // say so in their item; the deck's source is that of the ranked ones (an onboarding deck has
  // only the picks' cards)
  const ranked = rows.find((r) => r.source !== "explore" && r.source !== "onboarding") ??
    rows.find((r) => r.source !== "explore");
  const source = ranked ? ranked.source : rows.length ? "two_tower" : "cold_start";
  return {
    user_id: userId,
    model_version: rows.length ? rows[0].model_version : (arm?.version ?? null),
    source,
    items: rows.map((r) => ({
      video_id: r.video_id, score: r.score, reasons: r.reasons ?? [],
      ...(r.source === "explore" || (r.source === "onboarding" && source !== "onboarding") ? { source: r.source } : {}),
    })),
    took_ms: Math.round((performance.now() - t0) * 1000) / 1000,
  };
}

/** POST /functions/v1/update_user_embedding: the user's vector for every active version,
 * stored in user_embeddings in one transaction. 404 for a user the database does not know. */
export async function updateUserEmbedding(sql: Sql, userId: string, t0: number) {
  const all = await arms(sql, userId, true);
  const known = all.some((a) => a.features !== null) ||
    (await sql`SELECT twotower.get_user_embedding_features(${userId}, now(), 1) IS NOT NULL AS known`)[0].known;
  if (!known) throw new HttpError(404, `unknown user ${JSON.stringify(userId)}`);
  const vectors: [string, Float32Array][] = [];
  for (const arm of all) {
    const v = await userVector(arm);
    if (v) vectors.push([arm.version, v]);
  }
  await sql.begin(async (tx) => {
    for (const [version, v] of vectors) {
      await tx`INSERT INTO twotower.user_embeddings (model_version, user_id, embedding, last_updated)
               VALUES (${version}, ${userId}, ${literal(v)}, clock_timestamp())
               ON CONFLICT (model_version, user_id) DO UPDATE
               SET embedding = excluded.embedding, last_updated = excluded.last_updated`;
    }
  });
  return {
    user_id: userId,
    versions: vectors.map(([v]) => v),
    took_ms: Math.round((performance.now() - t0) * 1000) / 1000,
  };
}
