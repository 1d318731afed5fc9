"""Access tokens: EdDSA-signed JWTs (RFC 9068 shape) minted by the service and checked by users' servers.

Asymmetric on purpose: a user's server holds only the public key, so nobody who can read a server's
environment or memory can mint a token for another user's server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["LEEWAY", "TOKEN_TYPE", "InvalidToken", "SigningKey", "decode_access_token"]

TOKEN_TYPE = "at+jwt"  # RFC 9068: keeps an ID token or another JWT from passing as an access token
ALGORITHM = "EdDSA"
LEEWAY = 5  # seconds of clock skew between the service and the servers that check its tokens


class InvalidToken(ValueError):
    """An access token whose signature, issuer, audience or lifetime does not hold; ``str()`` says what to do."""


def decode_access_token(token: str, key: Any, *, audience: str | list[str], issuer: str) -> dict[str, Any]:
    """The claims of an access token signed with ``key`` for ``audience`` by ``issuer``; :class:`InvalidToken`."""
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the access token has expired: refresh it, or sign in again") from None
    except jwt.InvalidAudienceError:
        resource = audience if isinstance(audience, str) else audience[0]
        raise InvalidToken(
            f"the access token was issued for another resource, not {resource}: request a token with "
            f"resource={resource}"
        ) from None
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"the access token is not valid ({exc}): sign in again") from None


class SigningKey:
    """The service's Ed25519 key, kept in ``state_dir`` (0600) so tokens survive a service restart."""

    def __init__(self, state_dir: Path) -> None:
        path = state_dir / "signing-key.pem"
        if path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert isinstance(key, Ed25519PrivateKey), f"{path} is not an Ed25519 key"
        else:
            state_dir.mkdir(parents=True, exist_ok=True)
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        self._key = key
        public = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
        self.kid = _thumbprint(public)
        self.jwk = {**public, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def derive(self, label: str) -> str:
        """A secret for ``label`` that only this key's holder can compute (HMAC of the private key): stored nowhere."""
        raw = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return hmac.new(raw, label.encode(), hashlib.sha256).hexdigest()

    @property
    def public_key(self) -> Any:
        return self._key.public_key()

    def mint(
        self,
        *,
        issuer: str,
        subject: str,
        audience: str,
        client_id: str,
        scopes: list[str],
        grant_id: str,
        ttl: int,
    ) -> tuple[str, int]:
        """A signed access token and its expiry (epoch seconds)."""
        now = int(time.time())
        expires = now + ttl
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": audience,
            "client_id": client_id,
            "scope": " ".join(scopes),
            "gid": grant_id,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": TOKEN_TYPE})
        return token, expires

    def read(self, token: str, issuer: str) -> dict[str, Any] | None:
        """The claims of a token this key signed (any audience, expired or not), for revocation; else None."""
        try:
            return jwt.decode(
                token,
                self._key.public_key(),
                algorithms=[ALGORITHM],
                issuer=issuer,
                options={"verify_aud": False, "verify_exp": False},
            )
        except jwt.PyJWTError:
            return None


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an OKP key: its id, the same for everyone who derives it."""
    members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).decode().rstrip("=")
