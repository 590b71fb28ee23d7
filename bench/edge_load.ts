// bench/edge.py's artifact-load probe: what a cold Edge Function spends on its model before the
// first answer (read + SHA256 + onnxruntime-web session + one run), with the functions' own code.
//   deno run --allow-read --allow-env bench/edge_load.ts <artifacts root> <version> <mode>
import { loadModel, type Mode, runUserTower } from "../supabase/functions/_shared/artifact.ts";

const [base, version, mode] = Deno.args;
const t0 = performance.now();
const m = await loadModel(version, mode as Mode, base);
const t1 = performance.now();
await runUserTower(m, { like_count: 3, nope_count: 1, liked_tags: { t1: 2 }, liked_video_ids: ["v1", "v2"] });
const t2 = performance.now();
await runUserTower(m, { like_count: 4, nope_count: 1, liked_tags: { t2: 1 }, liked_video_ids: ["v3"] });
const t3 = performance.now();
console.log(JSON.stringify({
  load_and_verify_ms: Math.round(t1 - t0), first_run_ms: Math.round((t2 - t1) * 100) / 100,
  warm_run_ms: Math.round((t3 - t2) * 100) / 100, heap_mb: Math.round(Deno.memoryUsage().rss / 2 ** 20),
}));
