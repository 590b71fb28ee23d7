// Who is asking, by the same rules as the Python service (twotower/serve/auth.py): a Supabase
// user's access token (HS256 with the project's JWT secret, or a key of its JWKS picked by `kid`)
// acts for its own `sub`; the service key, or a JWT with role=service_role, acts for anyone; a
// missing, bad, expired or `anon` token is 401; another user's id is 403.
//
// Environment (Supabase sets the SUPABASE_* ones in every function):
//   TWOTOWER_JWT_SECRET or SUPABASE_JWT_SECRET   HS256 secret
//   TWOTOWER_JWKS_URL                            JWKS URL or file (asymmetric signing keys)
//   TWOTOWER_JWT_AUDIENCE                        default "authenticated"; empty: not checked
//   TWOTOWER_JWT_ISSUER                          checked when set
//   TWOTOWER_SERVICE_KEY or SUPABASE_SERVICE_ROLE_KEY   a key compared as is
//   TWOTOWER_AUTH_ENABLED=false                  local use only: everyone is the service

import { jose } from "./deps.ts";
import { HttpError } from "./http.ts";

export interface Principal {
  userId: string | null; // null for a service
  service: boolean;
}

const BEARER = { "WWW-Authenticate": "Bearer" };
const unauthorized = (detail: string) => new HttpError(401, detail, [], BEARER);

export function requireSelf(p: Principal, userId: string): void {
  if (!p.service && p.userId !== userId) throw new HttpError(403, "this token may only act for its own user_id");
}

type KeySet = (h: jose.JWTHeaderParameters, t: jose.FlattenedJWSInput) => Promise<jose.CryptoKey>;

export class Authenticator {
  readonly enabled: boolean;
  private secret?: Uint8Array;
  private serviceKey?: string;
  private audience?: string;
  private issuer?: string;
  private jwks?: KeySet;
  private jwksReady: Promise<void>;
  private verified = new Map<string, [Principal, number]>();

  constructor(env: (k: string) => string | undefined = (k) => Deno.env.get(k)) {
    this.enabled = (env("TWOTOWER_AUTH_ENABLED") ?? "true").toLowerCase() !== "false";
    const secret = env("TWOTOWER_JWT_SECRET") || env("SUPABASE_JWT_SECRET");
    if (secret) this.secret = new TextEncoder().encode(secret);
    this.serviceKey = env("TWOTOWER_SERVICE_KEY") || env("SUPABASE_SERVICE_ROLE_KEY") || undefined;
    const aud = env("TWOTOWER_JWT_AUDIENCE");
    this.audience = aud === undefined ? "authenticated" : aud || undefined;
    this.issuer = env("TWOTOWER_JWT_ISSUER") || undefined;
    const source = env("TWOTOWER_JWKS_URL");
    this.jwksReady = source ? this.loadJwks(source) : Promise.resolve();
    if (this.enabled && !(secret || source || this.serviceKey)) {
      throw new Error("auth is enabled but none of TWOTOWER_JWT_SECRET (SUPABASE_JWT_SECRET), TWOTOWER_JWKS_URL " +
        "or TWOTOWER_SERVICE_KEY (SUPABASE_SERVICE_ROLE_KEY) is set");
    }
  }

  private async loadJwks(source: string): Promise<void> {
    if (/^https?:/i.test(source)) {
      // jose re-reads it every 5 minutes, and at most every 30 s when a token names a new kid.
      this.jwks = jose.createRemoteJWKSet(new URL(source), { cacheMaxAge: 300_000, cooldownDuration: 30_000 });
      return;
    }
    const path = source.replace(/^file:\/\//, "");
    this.jwks = jose.createLocalJWKSet(JSON.parse(await Deno.readTextFile(path)));
  }

  /** The principal for an Authorization header value; HttpError 401 if nobody. */
  async principal(header: string | null): Promise<Principal> {
    if (!this.enabled) return { userId: null, service: true };
    const [scheme, token] = (header ?? "").split(/ (.*)/s, 2);
    if (scheme?.toLowerCase() !== "bearer" || !token) throw unauthorized("missing bearer token");
    if (this.serviceKey && timingSafeEqual(token, this.serviceKey)) return { userId: null, service: true };
    if (!(this.secret || this.jwks)) throw unauthorized("invalid token");
    const hit = this.verified.get(token);
    if (hit && hit[1] > Date.now() / 1000) return hit[0];
    const [p, exp] = await this.verify(token);
    if (this.verified.size >= 50_000) this.verified.clear();
    this.verified.set(token, [p, exp]);
    return p;
  }

  private async verify(token: string): Promise<[Principal, number]> {
    let claims: jose.JWTPayload;
    try {
      await this.jwksReady;
      claims = (await this.check(token)).payload;
    } catch (e) {
      if (e instanceof HttpError) throw e;
      if (e instanceof jose.errors.JWTExpired) throw unauthorized("token expired");
      throw unauthorized(`invalid token: ${(e as Error).message}`);
    }
    const exp = Number(claims.exp);
    const role = claims.role as string | undefined;
    const iss = claims.iss;
    if (role === "service_role") {
      if (this.issuer && iss !== this.issuer && iss !== "supabase") {
        throw unauthorized(`invalid token: issuer ${JSON.stringify(iss)} is not ${JSON.stringify(this.issuer)}`);
      }
      return [{ userId: null, service: true }, exp];
    }
    if (role !== undefined && role !== null && role !== "authenticated") {
      throw unauthorized(`invalid token: role ${JSON.stringify(role)} cannot act for a user (sign the user in)`);
    }
    if (this.issuer && iss !== this.issuer) {
      throw unauthorized(`invalid token: issuer ${JSON.stringify(iss)} is not ${JSON.stringify(this.issuer)}`);
    }
    if (this.audience) {
      const auds = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (!auds.includes(this.audience)) {
        throw unauthorized(`invalid token: audience ${JSON.stringify(claims.aud)} is not "${this.audience}"`);
      }
    }
    if (!claims.sub || typeof claims.sub !== "string") throw unauthorized("invalid token: no sub claim");
    return [{ userId: claims.sub, service: false }, exp];
  }

  /** The JWKS key named by the token's kid, else the shared secret. */
  private async check(token: string): Promise<jose.JWTVerifyResult> {
    const opts = { requiredClaims: ["exp"] };
    const kid = jose.decodeProtectedHeader(token).kid;
    if (kid !== undefined && this.jwks) {
      try {
        return await jose.jwtVerify(token, this.jwks, opts);
      } catch (e) {
        if (!(e instanceof jose.errors.JWKSNoMatchingKey) || !this.secret) {
          if (e instanceof jose.errors.JWKSNoMatchingKey) throw unauthorized("token signed with an unknown key id");
          throw e;
        }
      }
    }
    if (!this.secret) throw unauthorized("token signed with an unknown key id");
    return await jose.jwtVerify(token, this.secret, { ...opts, algorithms: ["HS256"] });
  }
}

function timingSafeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}
