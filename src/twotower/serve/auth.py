"""Supabase-style auth: `Authorization: Bearer <JWT>` whose `sub` is the user; a service key
(the configured key, or a JWT with role=service_role) may act for anyone. HS256 with a shared
secret, or RS256/ES256 with a public key. A missing, bad or expired token is 401, never an
empty list; another user's id is 403."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import jwt
from fastapi import HTTPException, Request

from twotower.config import Settings


@dataclass(frozen=True)
class Principal:
    user_id: str | None  # None for a service
    service: bool

    def require(self, user_id: str) -> None:
        if not self.service and self.user_id != user_id:
            raise HTTPException(403, "this token may only act for its own user_id")


class Authenticator:
    def __init__(self, s: Settings) -> None:
        self.enabled = s.auth_enabled
        self.service_key = s.service_key
        self.audience = s.jwt_audience
        if s.jwt_public_key:
            self.key, self.algorithms = s.jwt_public_key, ["RS256", "ES256"]
        else:
            self.key, self.algorithms = s.jwt_secret, ["HS256"]
        # token -> (principal, exp): an app sends the same token on every swipe until it expires,
        # and checking its signature again costs more than the rest of the auth. Only tokens that
        # verified are kept, and only until their own expiry.
        self._verified: dict[str, tuple[Principal, float]] = {}
        if self.enabled and not (self.key or self.service_key):
            raise ValueError("auth is enabled but neither TWOTOWER_JWT_SECRET, TWOTOWER_JWT_PUBLIC_KEY nor "
                             "TWOTOWER_SERVICE_KEY is set (or set TWOTOWER_AUTH_ENABLED=false for local use)")

    def __call__(self, request: Request) -> Principal:
        return self.principal(request.headers.get("authorization", ""))

    def principal(self, header: str) -> Principal:
        """Who sends a request with this Authorization header; HTTPException 401 if nobody."""
        if not self.enabled:
            return Principal(None, True)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
        if self.service_key and hmac.compare_digest(token.encode(), self.service_key.encode()):
            return Principal(None, True)
        if not self.key:
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})
        hit = self._verified.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        principal, exp = self._verify(token)
        if len(self._verified) >= 50_000:
            self._verified.clear()
        self._verified[token] = (principal, exp)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(token, self.key, algorithms=self.algorithms, audience=self.audience,
                                options={"require": ["exp"], "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise HTTPException(401, "token expired", headers={"WWW-Authenticate": "Bearer"}) from None
        except jwt.PyJWTError as e:
            raise HTTPException(401, f"invalid token: {e}", headers={"WWW-Authenticate": "Bearer"}) from None
        exp = float(claims["exp"])
        if claims.get("role") == "service_role":
            return Principal(None, True), exp
        sub = claims.get("sub")
        if not sub:
            raise HTTPException(401, "token has no sub claim")
        return Principal(str(sub), False), exp
