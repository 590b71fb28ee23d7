"""Supabase-style auth: `Authorization: Bearer <JWT>` whose `sub` is the user; a service key
(the configured key, or a JWT with role=service_role) may act for anyone. HS256 with a shared
secret, RS256/ES256 with a public key, or the keys of a JWKS document (Supabase's asymmetric
signing keys: `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`), picked by the
token's `kid`; a secret and a JWKS can be used together while a project migrates. A missing,
bad or expired token is 401, never an empty list; another user's id is 403.

Claims, checked as Supabase issues them: a user token must carry `aud` = TWOTOWER_JWT_AUDIENCE
(default `authenticated`; empty turns the check off), `iss` = TWOTOWER_JWT_ISSUER when that is set
(`https://<project>.supabase.co/auth/v1`), a `sub`, an `exp`, and no `role` other than
`authenticated`. A `service_role` token (Supabase's service key is one: `iss` "supabase", no `aud`,
no `sub`) acts for anyone; its `aud` is not required, and its `iss` must be the configured issuer
or "supabase" when an issuer is set. An `anon` token is refused: it names nobody."""

from __future__ import annotations

import hmac
import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import jwt
from fastapi import Request

from twotower.config import Settings
from twotower.serve.edge import BEARER, EdgeError

log = logging.getLogger("twotower.serve")


def fetch_jwks(source: str, timeout: float = 5.0) -> dict[str, jwt.PyJWK]:
    """kid -> key from a JWKS URL (http/https) or file; ValueError with one clear line."""
    try:
        if source.startswith(("http://", "https://")):
            with urllib.request.urlopen(source, timeout=timeout) as r:  # noqa: S310 (http/https only)
                doc = json.load(r)
        else:
            doc = json.loads(Path(source.removeprefix("file://")).read_text())
        keys = jwt.PyJWKSet.from_dict(doc).keys
    except (OSError, ValueError, jwt.PyJWTError) as e:
        raise ValueError(f"cannot read the JWKS at {source}: {e}") from e
    out = {k.key_id: k for k in keys if k.key_id and k.public_key_use in (None, "sig")}
    if not out:
        raise ValueError(f"the JWKS at {source} has no signing key with a kid")
    return out


@dataclass(frozen=True)
class Principal:
    user_id: str | None  # None for a service
    service: bool

    def require(self, user_id: str) -> None:
        if not self.service and self.user_id != user_id:
            raise EdgeError(403, "this token may only act for its own user_id")


def unauthorized(detail: str) -> EdgeError:
    return EdgeError(401, detail, headers=BEARER)


class Authenticator:
    def __init__(self, s: Settings) -> None:
        self.enabled = s.auth_enabled
        self.service_key = s.service_key
        self.audience = s.jwt_audience or None
        self.issuer = s.jwt_issuer or None
        if s.jwt_public_key:
            self.key, self.algorithms = s.jwt_public_key, ["RS256", "ES256"]
        else:
            self.key, self.algorithms = s.jwt_secret, ["HS256"]
        self.jwks_source = s.jwks_url
        self.jwks_read_at, self.unknown_kid = time.monotonic(), False
        self.jwks: dict[str, jwt.PyJWK] = fetch_jwks(s.jwks_url) if (self.enabled and s.jwks_url) else {}
        # token -> (principal, exp): an app sends the same token on every swipe until it expires,
        # and checking its signature again costs more than the rest of the auth. Only tokens that
        # verified are kept, and only until their own expiry.
        self._verified: dict[str, tuple[Principal, float]] = {}
        if self.enabled and not (self.key or self.jwks or self.service_key):
            raise ValueError("auth is enabled but none of TWOTOWER_JWT_SECRET, TWOTOWER_JWT_PUBLIC_KEY, "
                             "TWOTOWER_JWKS_URL or TWOTOWER_SERVICE_KEY is set "
                             "(or set TWOTOWER_AUTH_ENABLED=false for local use)")

    def refresh_jwks(self) -> None:
        """Re-read the JWKS (keys rotate); on failure keep the keys we have. Blocking: run it in
        a thread."""
        self.jwks_read_at, self.unknown_kid = time.monotonic(), False
        if self.jwks_source:
            self.jwks = fetch_jwks(self.jwks_source)

    def jwks_due(self, every: float) -> bool:
        """Time to re-read the JWKS: every `every` seconds, or 30 s after a token named a key id
        we do not have (a key that was just rotated in)."""
        age = time.monotonic() - self.jwks_read_at
        return bool(self.jwks_source) and (age > every or (self.unknown_kid and age > 30))

    def __call__(self, request: Request) -> Principal:
        from twotower.serve.edge import header

        return self.principal(header(request.headers.raw, b"authorization"))

    def principal(self, header: bytes | str | None) -> Principal:
        """Who sends a request with this Authorization header; EdgeError 401 if nobody."""
        if not self.enabled:
            return Principal(None, True)
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("missing bearer token")
        if self.service_key and hmac.compare_digest(token.encode(), self.service_key.encode()):
            return Principal(None, True)
        if not (self.key or self.jwks):
            raise unauthorized("invalid token")
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        principal, exp = self._verify(token)
        if len(self._verified) >= 50_000:
            self._verified.clear()
        self._verified[token] = (principal, exp)
        return principal

    def _key(self, token: str) -> tuple[object, list[str]]:
        """The key and algorithms a token must verify with: the JWKS key named by its kid, else
        the configured secret or public key."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as e:
            raise unauthorized(f"invalid token: {e}") from None
        if kid is not None and kid in self.jwks:
            k = self.jwks[kid]
            return k.key, [k.algorithm_name]
        if kid is not None and self.jwks:
            self.unknown_kid = True
        if self.key:
            return self.key, self.algorithms
        raise unauthorized("token signed with an unknown key id")

    def _verify(self, token: str) -> tuple[Principal, float]:
        key, algorithms = self._key(token)
        try:
            # aud and iss are checked below, where service_role tokens are told apart.
            claims = jwt.decode(token, key, algorithms=algorithms,
                                options={"require": ["exp"], "verify_aud": False, "verify_iss": False})
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.PyJWTError as e:
            raise unauthorized(f"invalid token: {e}") from None
        exp = float(claims["exp"])
        role, iss = claims.get("role"), claims.get("iss")
        if role == "service_role":
            if self.issuer and iss not in (self.issuer, "supabase"):
                raise unauthorized(f"invalid token: issuer {iss!r} is not {self.issuer!r}")
            return Principal(None, True), exp
        if role not in (None, "authenticated"):
            raise unauthorized(f"invalid token: role {role!r} cannot act for a user (sign the user in)")
        if self.issuer and iss != self.issuer:
            raise unauthorized(f"invalid token: issuer {iss!r} is not {self.issuer!r}")
        if self.audience:
            aud = claims.get("aud")
            auds = aud if isinstance(aud, list) else [aud]
            if self.audience not in auds:
                raise unauthorized(f"invalid token: audience {aud!r} is not {self.audience!r}")
        sub = claims.get("sub")
        if not sub or not isinstance(sub, str):
            raise unauthorized("invalid token: no sub claim")
        return Principal(sub, False), exp
