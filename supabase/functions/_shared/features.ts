// The user tower's input, rebuilt from the artifact's language-neutral files (feature_schema.json,
// normalizer.json, vocab_tag.json, vocab_actress.json) and the JSON of
// twotower.get_user_embedding_features, exactly as twotower.features.FeaturePipeline
// .user_vector_from_json builds it in Python (tests/test_edge.py holds the two to equality):
//
//   [8 standardised numerics] [average like hour / 23] [liked-tag BOW, L2] [liked-performer BOW, L2]
//
// Arithmetic is done in float64 and rounded to float32 at the end, as numpy does; times keep
// their microseconds (a JS Date would drop them).

export type FeatureJson = Record<string, unknown>;

export interface Block {
  name: string;
  offset: number;
  length: number;
  kind: string;
  features?: string[];
}

export interface UserSchema {
  dim: number;
  blocks: Block[];
  numeric: string[];
  mean: number[];
  scale: number[];
  tagIndex: Map<string, number>;
  performerIndex: Map<string, number>;
  referenceTime: number; // epoch microseconds
  maxHistory: number;
}

const US_PER_DAY = 86_400;

/** The raw value of every user numeric the pipeline knows (NaN: missing). */
type Raw = (j: FeatureJson, asOf: number) => number;
const RAW: Record<string, Raw> = {
  account_age_days: (j, asOf) => days(asOf, j.created_at),
  mean_price: (j) => num(j.mean_price),
  median_price: (j) => num(j.median_price),
  like_count: (j) => count(j.like_count),
  nope_count: (j) => count(j.nope_count),
  decision_count: (j) => count(j.like_count) + count(j.nope_count),
  like_ratio: (j) => {
    const n = count(j.like_count) + count(j.nope_count);
    return n > 0 ? count(j.like_count) / n : 0.5;
  },
  recent_like_days: (j, asOf) => days(asOf, j.last_like_at),
};

/** The user half of feature_schema.json + normalizer.json + the vocabularies, checked. */
export function userSchema(
  featureSchema: any,
  normalizer: any,
  tagVocab: string[],
  performerVocab: string[],
): UserSchema {
  const user = featureSchema?.user;
  if (!user || !Array.isArray(user.blocks)) throw new Error("feature_schema.json has no user blocks");
  const blocks: Block[] = user.blocks;
  const want = ["user_numeric", "average_like_hour", "liked_tags", "liked_performers"];
  const names = blocks.map((b) => b.name);
  if (names.join() !== want.join()) {
    throw new Error(`feature_schema.json user blocks are ${names.join(", ")}, not ${want.join(", ")}: ` +
      "this function and the model come from different twotower releases");
  }
  const numeric: string[] = normalizer.user.features;
  for (const f of numeric) {
    if (!(f in RAW)) throw new Error(`unknown user feature ${f} in normalizer.json: update the functions`);
  }
  const [nb, , tb, pb] = blocks;
  if (nb.length !== numeric.length || tb.length !== tagVocab.length || pb.length !== performerVocab.length) {
    throw new Error("feature_schema.json block lengths do not match normalizer.json and the vocabularies");
  }
  const referenceTime = parseTime(featureSchema.reference_time);
  if (referenceTime === null) throw new Error("feature_schema.json has no reference_time");
  return {
    dim: user.dim,
    blocks,
    numeric,
    mean: normalizer.user.mean,
    scale: normalizer.user.scale,
    tagIndex: new Map(tagVocab.map((t, i) => [t, i])),
    performerIndex: new Map(performerVocab.map((t, i) => [t, i])),
    referenceTime,
    maxHistory: featureSchema.max_history ?? 200,
  };
}

/** One user's input vector from get_user_embedding_features JSON. */
export function userVector(s: UserSchema, j: FeatureJson): Float32Array {
  const out = new Float32Array(s.dim);
  const asOf = parseTime(j.as_of) ?? s.referenceTime;
  const [nb, hb, tb, pb] = s.blocks;
  s.numeric.forEach((name, k) => {
    let x = RAW[name](j, asOf);
    if (Number.isNaN(x)) x = s.mean[k]; // missing: the training mean, 0 after scaling
    out[nb.offset + k] = (x - s.mean[k]) / s.scale[k];
  });
  const hour = num(j.avg_like_hour);
  out[hb.offset] = Number.isNaN(hour) ? 0.5 : hour / 23.0;
  bag(out, tb.offset, s.tagIndex, j.liked_tags);
  bag(out, pb.offset, s.performerIndex, j.liked_performers);
  return out;
}

/** The liked videos as the model's item indices, most recent first, -1 for unknown, at least
 * one column (as twotower.embed.user_history). */
export function userHistory(itemIndex: Map<string, number>, maxHistory: number, j: FeatureJson): BigInt64Array {
  const liked = (Array.isArray(j.liked_video_ids) ? j.liked_video_ids : []).slice(0, maxHistory) as string[];
  const h = new BigInt64Array(Math.max(1, liked.length)).fill(-1n);
  liked.forEach((v, i) => (h[i] = BigInt(itemIndex.get(v) ?? -1)));
  return h;
}

/** Bag of words, L2-normalised, written at `offset`: a {term: count} object, or a list of terms
 * (each counted once). Terms outside the vocabulary add nothing. */
function bag(out: Float32Array, offset: number, index: Map<string, number>, terms: unknown): void {
  const v = new Map<number, number>();
  if (Array.isArray(terms)) {
    for (const t of new Set(terms)) if (index.has(t)) v.set(index.get(t)!, 1);
  } else if (terms && typeof terms === "object") {
    for (const [t, c] of Object.entries(terms)) {
      const i = index.get(t);
      if (i !== undefined) v.set(i, (v.get(i) ?? 0) + Number(c));
    }
  }
  let sq = 0;
  for (const c of v.values()) sq += c * c; // integer counts: exact in any order
  const norm = Math.sqrt(sq);
  if (norm > 0) for (const [i, c] of v) out[offset + i] = c / norm;
}

function num(x: unknown): number {
  return x === null || x === undefined ? NaN : Number(x);
}

function count(x: unknown): number {
  return x ? Number(x) : 0;
}

function days(asOf: number, t: unknown): number {
  const at = parseTime(t);
  // timedelta.total_seconds() / 86400: exact microseconds, then two correctly rounded divisions
  return at === null ? NaN : (asOf - at) / 1e6 / US_PER_DAY;
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/** An ISO 8601 time (as PostgreSQL's JSON and Python's isoformat write them) in epoch
 * microseconds; no offset means UTC. null for null. */
export function parseTime(x: unknown): number | null {
  if (x === null || x === undefined) return null;
  const m = ISO.exec(String(x).trim());
  if (!m) throw new Error(`not an ISO time: ${String(x)}`);
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = "", tz] = m;
  let us = Date.UTC(+y, +mo - 1, +d, +h, +mi, +s) * 1000 + Number(frac.padEnd(6, "0") || 0);
  if (tz && tz.toUpperCase() !== "Z") {
    const sign = tz[0] === "-" ? -1 : 1;
    const digits = tz.slice(1).replace(":", "");
    us -= sign * (Number(digits.slice(0, 2)) * 3600 + Number(digits.slice(2, 4) || 0) * 60) * 1e6;
  }
  return us;
}
