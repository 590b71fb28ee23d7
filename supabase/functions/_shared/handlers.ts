// The two functions as request handlers: the request edge (CORS, method, body, auth), then the
// work in recommend.ts. Each index.ts hands its handler to Deno.serve; `twotower edge serve`
// mounts both at /functions/v1/<name>, as Supabase serves them.

import { ArtifactError } from "./artifact.ts";
import { Authenticator, requireSelf } from "./auth.ts";
import { db, dbError } from "./db.ts";
import { authorization, CORS, HttpError, json, problem, readJson, validate } from "./http.ts";
import { recommend, updateUserEmbedding } from "./recommend.ts";

let auth: Authenticator | null = null;

type Work = (req: Request, t0: number) => Promise<unknown>;

function handler(work: Work): (req: Request) => Promise<Response> {
  return async (req: Request): Promise<Response> => {
    const t0 = performance.now();
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS });
    try {
      if (req.method !== "POST") throw new HttpError(405, "use POST", [], { Allow: "POST, OPTIONS" });
      return json(await work(req, t0));
    } catch (e) {
      if (e instanceof HttpError) return problem(e);
      if (e instanceof ArtifactError) {
        console.error(`twotower: ${e.message}`);
        return problem(new HttpError(503, e.message));
      }
      const err = dbError(e);
      if (err.status >= 500) console.error(`twotower: ${err.detail}`);
      return problem(err);
    }
  };
}

function who(req: Request) {
  auth ??= new Authenticator();
  return auth.principal(authorization(req));
}

interface RecommendationRequest {
  user_id: string;
  limit: number;
  exclude_impressions: boolean;
  deck_id: string | null;
  diversity: number | null;
  explore_share: number | null;
}

export const twoTowerRecommendations = handler(async (req, t0) => {
  const body = await readJson(req);
  const principal = await who(req);
  const r = validate<RecommendationRequest>(body, {
    user_id: { kind: "id", required: true },
    limit: { kind: "int", default: 20, min: 1, max: 100 },
    exclude_impressions: { kind: "bool", default: true },
    deck_id: { kind: "id", required: false },
    diversity: { kind: "unit" },
    explore_share: { kind: "unit" },
  });
  requireSelf(principal, r.user_id);
  return await recommend(db(), r.user_id, r.limit, t0,
    { impressions: r.exclude_impressions, deckId: r.deck_id, diversity: r.diversity, explore: r.explore_share });
});

export const updateUserEmbeddingHandler = handler(async (req, t0) => {
  const body = await readJson(req);
  const principal = await who(req);
  const r = validate<{ user_id: string }>(body, { user_id: { kind: "id", required: true } });
  requireSelf(principal, r.user_id);
  return await updateUserEmbedding(db(), r.user_id, t0);
});
