"""Password hashing for dashboard accounts: scrypt, a memory-hard KDF from the standard library.

A stored hash names its parameters (``scrypt$n$r$p$salt$digest``, base64 without padding), so
the cost can be raised later: old hashes still verify, and ``needs_rehash`` tells the login
to store a fresh one. The cost is OWASP's minimum for scrypt (N=2^17, r=8, p=1): about half
a second and 128 MiB per hash, on purpose. The web side runs these functions on a small pool
of its own (``bot.web.auth``), so the event loop and the database calls keep serving.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

SCHEME = "scrypt"
N, R, P = 2**17, 8, 1
# For the test suite only: hundreds of sign-ins at full cost would take minutes on a small
# machine, so tests/conftest.py lowers N through this variable (subprocesses inherit it).
# A hash made at a lower cost is rehashed at the next sign-in of a process without it.
TEST_COST_ENV = "SUPPORTBOT_TEST_SCRYPT_N"
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


def _valid_n(n: int) -> bool:
    return n >= 2 and not n & (n - 1)


def cost() -> tuple[int, int, int]:
    """(N, r, p) for new hashes: the defaults, unless the test suite lowered N."""
    raw = os.environ.get(TEST_COST_ENV, "")
    n = int(raw) if raw.isdigit() and _valid_n(int(raw)) else N
    return n, R, P


def hash_password(
    password: str, *, n: int | None = None, r: int | None = None, p: int | None = None
) -> str:
    default_n, default_r, default_p = cost()
    n, r, p = n or default_n, r or default_r, p or default_p
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
    if not _valid_n(n) or r < 1 or p < 1 or not salt or not digest:
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
    return parsed is None or parsed[:3] != cost() or len(parsed[4]) != KEY_BYTES


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
