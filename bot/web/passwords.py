"""Password hashing for dashboard accounts: scrypt, a memory-hard KDF from the standard library.

A stored hash names its parameters (``scrypt$n$r$p$salt$digest``, base64 without padding), so
the cost can be raised later: old hashes still verify, and ``needs_rehash`` tells the login
to store a fresh one. Hashing takes tens of milliseconds on purpose; the web side calls these
functions through ``asyncio.to_thread`` so the event loop keeps serving.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_CHARS = 8


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # OpenSSL refuses scrypt above its default 32 MiB unless maxmem allows it; 128·r·n bytes
    # is what the KDF needs, doubled for headroom so stronger parameters keep working.
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=2 * 128 * r * n * max(p, 1) + 1024 * 1024,
        dklen=length,
    )


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _derive(password, salt, n, r, p, KEY_BYTES)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or not digest:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches; a malformed hash never matches."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    candidate = _derive(password, salt, n, r, p, len(digest))
    return hmac.compare_digest(candidate, digest)


def needs_rehash(encoded: str) -> bool:
    parsed = _parse(encoded)
    return parsed is None or parsed[:3] != (N, R, P) or len(parsed[4]) != KEY_BYTES


# Verified against when the user name is unknown, so a wrong name costs the same time as a
# wrong password and response times do not reveal which accounts exist.
_DUMMY_HASH: str | None = None


def dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"the password must have at least {MIN_PASSWORD_CHARS} characters"
    if password != password.strip():
        return "the password must not start or end with whitespace"
    return None
