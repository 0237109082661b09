"""HS256 bearer tokens: minting, verification and scopes (RFC 9068-style `scope` claim)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from session_buddy.core import Actor
from session_buddy.core.errors import InvalidArgument, SessionBuddyError

AUDIENCE = "session-buddy"
LOGIN_AUDIENCE = "session-buddy-dashboard"  # a dashboard login cookie: never a bearer token
ISSUER = "session-buddy"
ALGORITHM = "HS256"
READ_SCOPE = "sessions:read"
WRITE_SCOPE = "sessions:write"
# Changes sessions started with another subject's token (a write token changes only its
# own subject's).
ADMIN_SCOPE = "sessions:admin"
KNOWN_SCOPES = (READ_SCOPE, WRITE_SCOPE, ADMIN_SCOPE)
DEFAULT_TTL_SECONDS = 3600
# Where the HTTP layer leaves the claims of a bearer header it verified (request scope).
CLAIMS_STATE_KEY = "session_buddy_claims"


class AuthError(SessionBuddyError):
    """A missing or invalid credential; the message says which, `reason` in one word
    (missing, malformed, expired, signature, audience, algorithm, scope)."""

    code = "unauthorized"

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class MissingScope(AuthError):
    """A valid credential without the scope the call needs."""

    code = "forbidden"

    def __init__(self, message: str, granted: list[str] | None = None) -> None:
        super().__init__(message, "scope")
        self.granted = granted or []


@dataclass(frozen=True)
class Caller:
    """Who is calling: a token still to verify, or claims the HTTP layer verified."""

    token: str | None = None
    claims: dict[str, Any] | None = None


@dataclass(frozen=True)
class TokenAuthority:
    """Verifies (and mints) tokens signed with the shared secret."""

    secret: str

    @classmethod
    def from_secret(cls, secret: str | None) -> TokenAuthority | None:
        return cls(secret) if secret else None

    def create(
        self, scopes: list[str], ttl_seconds: int = DEFAULT_TTL_SECONDS, subject: str = "cli"
    ) -> str:
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown or not scopes:
            bad = " ".join(unknown) or "(none)"
            raise InvalidArgument("scope", f"Invalid scope {bad}: use {', '.join(KNOWN_SCOPES)}")
        if ttl_seconds <= 0:
            raise InvalidArgument("ttl", "Invalid ttl: must be a positive number of seconds")
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
            raise AuthError(
                "a bearer token is required (Authorization header or token argument)", "missing"
            )
        return self._decode(token, AUDIENCE)

    def _decode(self, token: str, audience: str) -> dict[str, Any]:
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=audience,
                options={"require": ["exp", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired", "expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(f"token audience is not {audience!r}", "audience") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("token signature is invalid", "signature") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise AuthError(f"token algorithm must be {ALGORITHM}", "algorithm") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}", "malformed") from exc
        return claims

    def login(self, claims: dict[str, Any], longest_seconds: int) -> tuple[str, int]:
        """A dashboard login for verified token claims: a signed value for a cookie, good
        for reading only, on the dashboard only (its own audience), until the token
        expires or `longest_seconds` pass; and how many seconds that is."""
        import secrets

        import jwt

        now = int(time.time())
        expires = min(int(claims["exp"]), now + longest_seconds)
        login = {
            "iss": ISSUER,
            "aud": LOGIN_AUDIENCE,
            "sub": claims.get("sub", ""),
            "iat": now,
            "exp": expires,
            "scope": READ_SCOPE,
            "csrf": secrets.token_urlsafe(16),
        }
        return jwt.encode(login, self.secret, algorithm=ALGORITHM), expires - now

    def verify_login(self, value: str) -> dict[str, Any]:
        """The claims of a dashboard login cookie, or AuthError."""
        return self._decode(value, LOGIN_AUDIENCE)

    def authorize(self, caller: Caller, scope: str) -> dict[str, Any]:
        """The caller's claims, which must grant `scope`; a token is verified here, once."""
        claims = (
            self.verify(caller.token) if caller.token or caller.claims is None else caller.claims
        )
        granted = str(claims.get("scope", "")).split()
        if scope not in granted:
            raise MissingScope(f"token lacks scope {scope!r}", granted)
        return claims


def actor_of(claims: dict[str, Any] | None) -> Actor | None:
    """Who verified claims say the caller is (None without any: no secret set)."""
    if not claims:
        return None
    scopes = str(claims.get("scope", "")).split()
    return Actor(str(claims.get("sub", "")), admin=ADMIN_SCOPE in scopes)


def credential_rank(claims: Any) -> int:
    """How much a caller counts when the server must make room (connections, MCP
    sessions): 0 without verified claims, 1 with a token, 2 with one that may write."""
    if not isinstance(claims, dict):
        return 0
    return 2 if WRITE_SCOPE in str(claims.get("scope", "")).split() else 1


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header value."""
    if not authorization:
        return None
    kind, _, token = authorization.partition(" ")
    return token.strip() if kind.lower() == "bearer" and token.strip() else None
