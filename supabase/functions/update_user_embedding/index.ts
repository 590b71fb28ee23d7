// POST /functions/v1/update_user_embedding  {"user_id": "..."}
// -> {"user_id", "versions": [...], "took_ms"}: the user's vector for every active model version,
// stored in twotower.user_embeddings (the Python service's POST /v1/users/{id}/embedding).
import { updateUserEmbeddingHandler } from "../_shared/handlers.ts";

Deno.serve(updateUserEmbeddingHandler);
