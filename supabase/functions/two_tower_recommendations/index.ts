// POST /functions/v1/two_tower_recommendations  {"user_id": "...", "limit": 20}
// -> {"user_id", "model_version", "source", "items": [{"video_id", "score", "reasons"}], "took_ms"}
// The same body and answer as the Python service's POST /v1/recommendations (seed 003 §7).
import { twoTowerRecommendations } from "../_shared/handlers.ts";

Deno.serve(twoTowerRecommendations);
