// The request edge, as the Python service has it (twotower/serve/edge.py and schemas.py): a
// 64 KiB body limit, JSON only, strict validation (no unknown fields, no "20" for 20, ids
// without control or invisible characters), one Authorization header, and every error as
// {"detail": str, "errors": [{"loc", "msg"}]}. Browsers get CORS as Supabase's guides set it.

export const MAX_BODY = 64 * 1024;

export interface ErrorItem {
  loc: (string | number)[];
  msg: string;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly errors: ErrorItem[] = [],
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

export const CORS = {
  "Access-Control-Allow-Origin": Deno.env.get("TWOTOWER_CORS_ORIGIN") ?? "*",
  "Access-Control-Allow-Headers": "authorization, x-client-info, apikey, content-type",
  "Access-Control-Allow-Methods": "POST, OPTIONS",
};

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...CORS, ...headers },
  });
}

export function problem(e: HttpError): Response {
  return json({ detail: e.detail, errors: e.errors }, e.status, e.headers);
}

/** Authorization, refused when sent twice (a proxy and we might read different copies). Deno
 * joins repeated headers with ", ", which a single bearer token never contains. */
export function authorization(req: Request): string | null {
  const v = req.headers.get("authorization");
  if (v !== null && v.includes(", ")) {
    throw new HttpError(401, "the authorization header was sent 2 times: send it once", [],
      { "WWW-Authenticate": "Bearer" });
  }
  return v;
}

function isJson(contentType: string | null): boolean {
  if (contentType === null) return false;
  const mime = contentType.split(";")[0].trim().toLowerCase();
  return mime === "application/json" || (mime.startsWith("application/") && mime.endsWith("+json"));
}

const invalid = (errors: ErrorItem[]): HttpError => {
  const first = errors[0];
  const where = first.loc.filter((x) => x !== "body").join(".");
  return new HttpError(422, where ? `${where}: ${first.msg}` : first.msg, errors);
};

/** The body as a JSON object, or 413/422 saying what is wrong. */
export async function readJson(req: Request): Promise<Record<string, unknown>> {
  const length = req.headers.get("content-length");
  if (length !== null && /^\d+$/.test(length) && Number(length) > MAX_BODY) {
    throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (req.body) {
    for await (const c of req.body) {
      size += c.byteLength;
      if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
      chunks.push(c);
    }
  }
  const notObject = new HttpError(422, "the request body must be a JSON object (send Content-Type: application/json)",
    [{ loc: ["body"], msg: "not JSON" }]);
  if (!isJson(req.headers.get("content-type"))) throw notObject;
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) (bytes.set(c, at), at += c.byteLength);
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes), keepFloats);
  } catch (e) {
    throw new HttpError(422, `the request body is not valid JSON: ${(e as Error).message}`,
      [{ loc: ["body"], msg: "JSON decode error" }]);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new HttpError(422, "the request body must be a JSON object (send Content-Type: application/json)",
      [{ loc: ["body"], msg: "Input should be an object" }]);
  }
  return data as Record<string, unknown>;
}

/** `20.0` and `2e1` are not integers in strict mode: a number written with a fraction or an
 * exponent stays distinguishable (JSON.parse source text access). */
function keepFloats(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === "number" && context?.source && /[.eE]/.test(context.source)) return { float: value };
  return value;
}

// schemas.py's ID_PATTERN: no control (C0, DEL, C1) or invisible format characters anywhere,
// no white space at either end.
const BAD = "\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff";
const ID = new RegExp(`^[^${BAD}\\s](?:[^${BAD}]*[^${BAD}\\s])?$`, "u");

export type Field =
  | { kind: "id"; required: boolean }
  | { kind: "int"; default: number; min: number; max: number }
  | { kind: "bool"; default: boolean }
  | { kind: "unit" }; // an optional number in 0..1, null allowed (pydantic: float | None, ge=0, le=1)

/** Strict validation against a field table (pydantic's strict mode, as the service runs it). */
export function validate<T>(data: Record<string, unknown>, fields: Record<string, Field>): T {
  const errors: ErrorItem[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(fields)) {
    const loc = ["body", name];
    const v = data[name];
    if (v === undefined || (v === null && ((f.kind === "id" && !f.required) || f.kind === "unit"))) {
      if (f.kind === "id" && f.required) errors.push({ loc, msg: "Field required" });
      else out[name] = f.kind === "id" || f.kind === "unit" ? null : f.default;
      continue;
    }
    if (f.kind === "unit") {  // keepFloats wraps 0.5 as {float: 0.5}; an integer (0, 1) stays a number
      const x = typeof v === "object" && v !== null && "float" in v ? (v as { float: unknown }).float : v;
      if (typeof x !== "number") errors.push({ loc, msg: "Input should be a valid number" });
      else if (x < 0) errors.push({ loc, msg: "Input should be greater than or equal to 0" });
      else if (x > 1) errors.push({ loc, msg: "Input should be less than or equal to 1" });
      else out[name] = x;
      continue;
    }
    if (f.kind === "id") {
      if (typeof v !== "string") errors.push({ loc, msg: "Input should be a valid string" });
      else if (v.length < 1) errors.push({ loc, msg: "String should have at least 1 character" });
      else if ([...v].length > 128) errors.push({ loc, msg: "String should have at most 128 characters" });
      else if (!ID.test(v)) {
        const msg = !v.trim() ? "must not be blank"
          : v !== v.trim() ? "must not start or end with white space"
          : "must hold only visible characters (no control or zero-width characters)";
        errors.push({ loc, msg: `Value error, ${msg}` });
      } else out[name] = v;
    } else if (f.kind === "int") {
      if (typeof v !== "number" || !Number.isInteger(v)) {
        errors.push({ loc, msg: "Input should be a valid integer" });
      } else if (v < f.min) errors.push({ loc, msg: `Input should be greater than or equal to ${f.min}` });
      else if (v > f.max) errors.push({ loc, msg: `Input should be less than or equal to ${f.max}` });
      else out[name] = v;
    } else if (typeof v !== "boolean") errors.push({ loc, msg: "Input should be a valid boolean" });
    else out[name] = v;
  }
  for (const k of Object.keys(data)) {
    if (!(k in fields)) errors.push({ loc: ["body", k], msg: "Extra inputs are not permitted" });
  }
  if (errors.length) throw invalid(errors);
  return out as T;
}
