// `twotower edge serve --port N`: both functions on one local port at /functions/v1/<name>, as
// Supabase serves them (for development and the tests). Prints one line when it listens.
import { twoTowerRecommendations, updateUserEmbeddingHandler } from "./handlers.ts";
import { json } from "./http.ts";

const routes: Record<string, (req: Request) => Promise<Response>> = {
  "/functions/v1/two_tower_recommendations": twoTowerRecommendations,
  "/functions/v1/update_user_embedding": updateUserEmbeddingHandler,
};

const port = Number(Deno.args[0] ?? Deno.env.get("PORT") ?? 54321);
Deno.serve({
  hostname: "127.0.0.1",
  port,
  onListen: ({ hostname, port }) => console.log(`twotower edge functions at http://${hostname}:${port}/functions/v1/`),
}, (req) => {
  const path = new URL(req.url).pathname.replace(/\/+$/, "");
  const route = routes[path];
  if (route) return route(req);
  if (path === "/healthz") return json({ status: "ok" });
  return json({ detail: `no function at ${path}: use ${Object.keys(routes).join(" or ")}`, errors: [] }, 404);
});
