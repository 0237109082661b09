"""HS256 bearer tokens: minting, verification and scopes (RFC 9068-style `scope` claim)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

SECRET_ENV = "SESSION_BUDDY_SECRET"
AUDIENCE = "session-buddy"
ISSUER = "session-buddy"
ALGORITHM = "HS256"
READ_SCOPE = "sessions:read"
WRITE_SCOPE = "sessions:write"
KNOWN_SCOPES = (READ_SCOPE, WRITE_SCOPE)
DEFAULT_TTL_SECONDS = 3600


class AuthError(Exception):
    """A missing, invalid or insufficient credential; the message says which."""

    def __init__(self, message: str, *, insufficient_scope: bool = False) -> None:
        super().__init__(message)
        self.insufficient_scope = insufficient_scope


@dataclass(frozen=True)
class TokenAuthority:
    """Verifies (and mints) tokens signed with the shared secret."""

    secret: str

    @classmethod
    def from_environment(cls) -> TokenAuthority | None:
        secret = os.environ.get(SECRET_ENV)
        return cls(secret) if secret else None

    def create(
        self, scopes: list[str], ttl_seconds: int = DEFAULT_TTL_SECONDS, subject: str = "cli"
    ) -> str:
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown or not scopes:
            bad = " ".join(unknown) or "(none)"
            raise ValueError(f"Invalid scope {bad}: use {' and/or '.join(KNOWN_SCOPES)}")
        if ttl_seconds <= 0:
            raise ValueError("Invalid ttl: must be a positive number of seconds")
        import jwt  # imported on use: servers without a secret never need it

        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": str(uuid.uuid4()),
            "scope": " ".join(dict.fromkeys(scopes)),
        }
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str | None) -> dict[str, Any]:
        """The token's claims, or AuthError naming what is wrong with it."""
        if not token:
            raise AuthError("a bearer token is required (Authorization header or token argument)")
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"token audience is not {AUDIENCE!r}") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("token signature is invalid") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise AuthError(f"token algorithm must be {ALGORITHM}") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return claims

    def authorize(self, token: str | None, scope: str) -> dict[str, Any]:
        """Verify the token and require `scope` among its scopes."""
        claims = self.verify(token)
        granted = str(claims.get("scope", "")).split()
        if scope not in granted:
            raise AuthError(f"token lacks scope {scope!r}", insufficient_scope=True)
        return claims


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header value."""
    if not authorization:
        return None
    kind, _, token = authorization.partition(" ")
    return token.strip() if kind.lower() == "bearer" and token.strip() else None
