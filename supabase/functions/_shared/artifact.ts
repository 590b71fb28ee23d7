// A model version's artifact folder, loaded only after every file the function uses matches its
// SHA256 and size in manifest.json (as twotower.export.verify_manifest does in Python). The folder
// is bundled beside the functions (`twotower edge bundle`) or read from a URL such as a Supabase
// Storage bucket: TWOTOWER_ARTIFACTS is a folder or an http(s) base, holding <version>/<file>.
//
// What a function needs depends on model_meta.json "user_vector": "sql" needs no model file
// at all (the history sum is computed in SQL); "sql+onnx" runs user_content.onnx and adds the SQL
// history sum; "onnx" runs the whole user_tower.onnx (and maps liked videos with vocab_item.json).

import { ort } from "./deps.ts";
import { type FeatureJson, type UserSchema, userHistory, userSchema, userVector } from "./features.ts";

export type Mode = "sql" | "sql+onnx" | "onnx";

export class ArtifactError extends Error {}

export interface Model {
  version: string;
  mode: Mode;
  dim: number;
  normalized: boolean;
  schema: UserSchema;
  session: ort.InferenceSession | null;
  itemIndex: Map<string, number>;
  inputs: string[];
}

ort.env.wasm.numThreads = 1; // an Edge isolate has one core and no worker threads
ort.env.logLevel = "error";

const COMMON = ["model_meta.json", "feature_schema.json", "normalizer.json", "vocab_tag.json", "vocab_actress.json"];
const NEEDS: Record<Mode, string[]> = {
  "sql": ["model_meta.json"],
  "sql+onnx": [...COMMON, "user_content.onnx"],
  "onnx": [...COMMON, "user_tower.onnx", "vocab_item.json"],
};

/** The files a consumer of this mode reads (what `twotower edge bundle` copies). */
export function neededFiles(mode: Mode): string[] {
  return NEEDS[mode];
}

export function artifactsBase(): string {
  return Deno.env.get("TWOTOWER_ARTIFACTS") ?? new URL("./models/", import.meta.url).href;
}

async function read(base: string, version: string, name: string): Promise<Uint8Array<ArrayBuffer>> {
  const url = `${base.replace(/\/+$/, "")}/${encodeURIComponent(version)}/${name}`;
  try {
    if (/^https?:/i.test(url)) {
      const token = Deno.env.get("TWOTOWER_ARTIFACTS_TOKEN"); // a private Storage bucket
      const r = await fetch(url, token ? { headers: { Authorization: `Bearer ${token}` } } : {});
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return new Uint8Array(await r.arrayBuffer());
    }
    return await Deno.readFile(url.startsWith("file:") ? new URL(url) : url);
  } catch (e) {
    throw new ArtifactError(`cannot read ${name} of model ${version} from ${base} (${(e as Error).message}): ` +
      `bundle it with \`twotower edge bundle --version ${version}\` or set TWOTOWER_ARTIFACTS`);
  }
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

function json(name: string, bytes: Uint8Array): any {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new ArtifactError(`${name} is not valid JSON (${(e as Error).message}); re-export the model`);
  }
}

/** The verified files of one version, by name. */
export async function readVerified(base: string, version: string, names: string[]): Promise<Map<string, Uint8Array<ArrayBuffer>>> {
  const manifest = json("manifest.json", await read(base, version, "manifest.json"));
  const files = manifest?.files;
  if (!files || typeof files !== "object") {
    throw new ArtifactError(`manifest.json of model ${version} has no files table; re-export the model`);
  }
  if (manifest.version !== undefined && manifest.version !== version) {
    throw new ArtifactError(`the manifest found for model ${version} is for ${manifest.version}: refusing it`);
  }
  const out = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const name of names) {
    const want = files[name];
    if (!want) throw new ArtifactError(`manifest.json of model ${version} does not list ${name}: refusing the model`);
    const bytes = await read(base, version, name);
    if (bytes.byteLength !== want.bytes || (await sha256(bytes)) !== want.sha256) {
      throw new ArtifactError(`${name} of model ${version} does not match its SHA256 in manifest.json ` +
        "(altered or corrupt): refusing the model; bundle it again");
    }
    out.set(name, bytes);
  }
  return out;
}

/** Load and verify one version for a consumer of the given mode. */
export async function loadModel(version: string, mode: Mode, base = artifactsBase()): Promise<Model> {
  const f = await readVerified(base, version, NEEDS[mode]);
  const meta = json("model_meta.json", f.get("model_meta.json")!);
  if (meta.version !== version) throw new ArtifactError(`model_meta.json is for ${meta.version}, not ${version}`);
  if (meta.user_vector && meta.user_vector !== mode) {
    throw new ArtifactError(`model ${version} builds its user vector by "${meta.user_vector}", ` +
      `but the database registered "${mode}": register the model again`);
  }
  const model: Model = {
    version, mode, dim: meta.embedding_dim, normalized: !!meta.normalized, session: null,
    itemIndex: new Map(), inputs: [],
    schema: null as unknown as UserSchema,
  };
  if (mode === "sql") return model;
  try {
    model.schema = userSchema(json("feature_schema.json", f.get("feature_schema.json")!),
      json("normalizer.json", f.get("normalizer.json")!), json("vocab_tag.json", f.get("vocab_tag.json")!),
      json("vocab_actress.json", f.get("vocab_actress.json")!));
  } catch (e) {
    throw e instanceof ArtifactError ? e : new ArtifactError(`model ${version}: ${(e as Error).message}`);
  }
  const onnx = mode === "onnx" ? "user_tower.onnx" : "user_content.onnx";
  try {
    model.session = await ort.InferenceSession.create(f.get(onnx)!, { executionProviders: ["wasm"] });
  } catch (e) {
    throw new ArtifactError(`model ${version}: onnxruntime cannot load ${onnx} (${(e as Error).message})`);
  }
  model.inputs = [...model.session.inputNames];
  if (mode === "onnx") {
    const vocab: string[] = json("vocab_item.json", f.get("vocab_item.json")!);
    model.itemIndex = new Map(vocab.map((v, i) => [v, i]));
  }
  return model;
}

/** The model's part of the user vector: the whole tower ("onnx") or the content MLP, to which
 * the caller adds the SQL history sum ("sql+onnx"). Also returns the input, for parity tests. */
export async function runUserTower(m: Model, j: FeatureJson): Promise<{ input: Float32Array; output: Float32Array }> {
  const input = userVector(m.schema, j);
  const feeds: Record<string, ort.Tensor> = { features: new ort.Tensor("float32", input, [1, input.length]) };
  if (m.inputs.includes("history")) {
    const h = userHistory(m.itemIndex, m.schema.maxHistory, j);
    feeds.history = new ort.Tensor("int64", h, [1, h.length]);
  }
  const out = await m.session!.run(Object.fromEntries(m.inputs.map((k) => [k, feeds[k]])));
  return { input, output: out.embedding.data as Float32Array };
}

/** Versions loaded once per isolate (a cold start pays for it; warm requests do not). A failed
 * load is remembered briefly, so a tampered bundle is refused without re-reading it each time. */
const cache = new Map<string, Promise<Model>>();

export function model(version: string, mode: Mode): Promise<Model> {
  const key = `${version}\u0000${mode}`;
  let p = cache.get(key);
  if (!p) {
    p = loadModel(version, mode);
    cache.set(key, p);
    p.catch(() => Deno.unrefTimer(setTimeout(() => cache.delete(key), 30_000)));
  }
  return p;
}
